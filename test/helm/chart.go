// Package helm renders, lints, installs and uninstalls the gateway's chart
// (charts/metrics-gateway) with Helm's own Go library (v4), in-process. It
// is a module of its own so that Helm's dependencies never reach the
// gateway's go.mod or the control plane the test module builds; the e2e
// suite drives it through cmd/helmchart.
package helm

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/cli/values"
	"helm.sh/helm/v4/pkg/getter"
	"helm.sh/helm/v4/pkg/kube"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Options name a release of the chart and its values.
type Options struct {
	// Chart is the chart's directory.
	Chart string
	// Release and Namespace name the release.
	Release, Namespace string
	// ValuesFiles are read in order, then Set (key=value, as helm --set).
	ValuesFiles []string
	Set         []string
	// KubeVersion is the cluster's version when rendering without one:
	// KubeVersionDefault when empty.
	KubeVersion string
}

// KubeVersionDefault is the control plane the chart is tested against.
const KubeVersionDefault = "v1.37.2"

func (o Options) load() (*chart.Chart, map[string]any, error) {
	ch, err := loader.Load(o.Chart)
	if err != nil {
		return nil, nil, fmt.Errorf("load chart %s: %w", o.Chart, err)
	}
	vals, err := o.values()
	return ch, vals, err
}

func (o Options) values() (map[string]any, error) {
	vo := values.Options{ValueFiles: o.ValuesFiles, Values: o.Set}
	vals, err := vo.MergeValues(getter.Providers{})
	if err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	return vals, nil
}

// Render is `helm template`: the manifest of the release, without a cluster.
func Render(ctx context.Context, o Options) (string, error) {
	ch, vals, err := o.load()
	if err != nil {
		return "", err
	}
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	install := action.NewInstall(cfg)
	install.DryRunStrategy = action.DryRunClient
	install.Replace = true // no name check against a cluster
	install.ReleaseName, install.Namespace = o.Release, o.Namespace
	kv, err := common.ParseKubeVersion(cmp.Or(o.KubeVersion, KubeVersionDefault))
	if err != nil {
		return "", err
	}
	install.KubeVersion = kv
	rel, err := install.RunWithContext(ctx, ch, vals)
	if err != nil {
		return "", fmt.Errorf("render %s: %w", o.Release, err)
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return "", fmt.Errorf("render %s: unexpected release type %T", o.Release, rel)
	}
	return r.Manifest, nil
}

// Lint is `helm lint --strict` of the chart with o's values: every message
// of INFO or above except the icon recommendation is returned as an error.
func Lint(o Options) error {
	vals, err := o.values()
	if err != nil {
		return err
	}
	l := action.NewLint()
	l.Strict, l.Namespace = true, o.Namespace
	kv, err := common.ParseKubeVersion(cmp.Or(o.KubeVersion, KubeVersionDefault))
	if err != nil {
		return err
	}
	l.KubeVersion = kv
	res := l.Run([]string{o.Chart}, vals)
	var problems []string
	for _, m := range res.Messages {
		if strings.Contains(m.Error(), "icon is recommended") {
			continue
		}
		problems = append(problems, m.Error())
	}
	for _, err := range res.Errors {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return fmt.Errorf("helm lint %s: %s", filepath.Base(o.Chart), strings.Join(problems, "; "))
	}
	return nil
}

// cluster is an action configuration against kubeconfig's cluster, with
// releases kept in Secrets of the release's namespace, as helm does.
func cluster(kubeconfig, namespace string) (*action.Configuration, error) {
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig, flags.Namespace = &kubeconfig, &namespace
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Install is `helm install --create-namespace` into kubeconfig's cluster. It
// does not wait for the workload.
func Install(ctx context.Context, kubeconfig string, o Options, out io.Writer) error {
	ch, vals, err := o.load()
	if err != nil {
		return err
	}
	cfg, err := cluster(kubeconfig, o.Namespace)
	if err != nil {
		return err
	}
	install := action.NewInstall(cfg)
	install.ReleaseName, install.Namespace = o.Release, o.Namespace
	install.CreateNamespace = true
	install.ServerSideApply = true
	install.WaitStrategy = kube.HookOnlyStrategy
	install.Timeout = 2 * time.Minute
	rel, err := install.RunWithContext(ctx, ch, vals)
	if err != nil {
		return fmt.Errorf("install %s: %w", o.Release, err)
	}
	if r, ok := rel.(*release.Release); ok {
		fmt.Fprintf(out, "release %s in %s: %s, revision %d\n%s\n", r.Name, r.Namespace, r.Info.Status, r.Version, r.Info.Notes)
	}
	return nil
}

// Uninstall is `helm uninstall`, waiting for the objects to be deleted.
func Uninstall(kubeconfig string, o Options, out io.Writer) error {
	cfg, err := cluster(kubeconfig, o.Namespace)
	if err != nil {
		return err
	}
	u := action.NewUninstall(cfg)
	u.WaitStrategy = kube.StatusWatcherStrategy
	u.Timeout = 2 * time.Minute
	res, err := u.Run(o.Release)
	if err != nil {
		return fmt.Errorf("uninstall %s: %w", o.Release, err)
	}
	if res != nil && res.Info != "" {
		fmt.Fprintln(out, res.Info)
	}
	fmt.Fprintf(out, "release %s uninstalled\n", o.Release)
	return nil
}
