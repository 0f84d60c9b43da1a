// Command helmchart renders, lints, installs and uninstalls the gateway's
// chart with Helm's Go library (package helm), for the e2e suite:
//
//	helmchart render    --chart DIR --release R --namespace NS [-f values.yaml] [--set k=v]
//	helmchart lint      --chart DIR [-f values.yaml] [--set k=v]
//	helmchart install   --kubeconfig FILE --chart DIR --release R --namespace NS [...]
//	helmchart uninstall --kubeconfig FILE --release R --namespace NS
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/metrics-gateway/metrics-gateway/test/helm"
)

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "helmchart:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("want a command: render, lint, install or uninstall")
	}
	var o helm.Options
	var kubeconfig string
	fs := flag.NewFlagSet("helmchart "+args[0], flag.ContinueOnError)
	fs.StringVar(&o.Chart, "chart", "charts/metrics-gateway", "the chart's directory")
	fs.StringVar(&o.Release, "release", "metrics-gateway", "release name")
	fs.StringVar(&o.Namespace, "namespace", "kube-system", "release namespace")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig of the cluster (install, uninstall)")
	fs.Var((*list)(&o.ValuesFiles), "f", "values file (repeatable)")
	fs.Var((*list)(&o.Set), "set", "key=value, as helm --set (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx := context.Background()
	switch args[0] {
	case "render":
		out, err := helm.Render(ctx, o)
		if err != nil {
			return err
		}
		_, err = fmt.Println(out)
		return err
	case "lint":
		return helm.Lint(o)
	case "install":
		return helm.Install(ctx, kubeconfig, o, os.Stdout)
	case "uninstall":
		return helm.Uninstall(kubeconfig, o, os.Stdout)
	}
	return fmt.Errorf("unknown command %q", args[0])
}
