package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/metrics-gateway/metrics-gateway/pkg/certs"
	"github.com/metrics-gateway/metrics-gateway/pkg/doctor"
	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/server"
)

// runDoctor is `metrics-gateway doctor`: it prints one PASS or FAIL line per
// check and returns an error, so the process exits 1, when any check fails.
func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := doctor.Options{Namespace: "kube-system", Service: certs.DefaultServiceName, APIServiceNames: append([]string(nil), certs.DefaultAPIServiceNames...)}
	var kubeconfig string
	kubelet := doctor.KubeletCheck{Options: scrape.DefaultKubeletOptions()}
	fs := pflag.NewFlagSet("metrics-gateway doctor", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Path to a kubeconfig (default: in-cluster config, as the gateway's ServiceAccount when run in its pod).")
	fs.StringVar(&o.Namespace, "namespace", o.Namespace, "Namespace of the gateway's Service.")
	fs.StringVar(&o.Service, "service", o.Service, "Name of the gateway's Service, where its APIServices must point.")
	fs.StringSliceVar(&o.APIServiceNames, "apiservice-names", o.APIServiceNames, "The gateway's APIServices.")
	fs.StringVar(&o.AsServiceAccount, "as-serviceaccount", "", "Check RBAC for this ServiceAccount (namespace/name) with SubjectAccessReview instead of for the caller.")
	fs.StringVar(&kubelet.Node, "kubelet-node", "", "Node whose kubelet to probe (default: the first Ready node --node-selector selects).")
	server.AddKubeletFlags(fs, &kubelet.Options)
	help := fs.BoolP("help", "h", false, "Show this help and exit.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *help {
		fmt.Fprintf(stdout, "metrics-gateway doctor checks what the gateway needs from its cluster and prints PASS or FAIL, with a fix, per check.\n\nUsage:\n  metrics-gateway doctor [flags]\n\nFlags:\n")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("doctor: unexpected arguments %v", fs.Args())
	}
	if errs := kubelet.Options.Validate(); len(errs) > 0 {
		return fmt.Errorf("doctor: %w", errors.Join(errs...))
	}
	c, err := server.LoadClientConfig(kubeconfig)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	kubelet.Credentials, err = server.KubeletCredentials(c, kubeconfig, kubelet.Options.ClientCertFile != "")
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	o.Kubelet = &kubelet
	kube, err := kubernetes.NewForConfig(c)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	if kubelet.Options.ServiceAccount != "" {
		// Probe with what the gateway sends kubelets: a short-lived token of
		// the read-only ServiceAccount.
		ns, name, err := kubelet.Options.ServiceAccountRef()
		if err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
		tok, _, err := server.RequestKubeletToken(ctx, kube, ns, name, 10*time.Minute)
		if err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
		kubelet.Credentials = kubelet.Credentials.WithBearerOnly(tok, "")
	}
	dyn, err := dynamic.NewForConfig(c)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	if n := doctor.Print(stdout, doctor.Run(ctx, kube, dyn, o)); n > 0 {
		return fmt.Errorf("doctor: %d checks failed", n)
	}
	return nil
}
