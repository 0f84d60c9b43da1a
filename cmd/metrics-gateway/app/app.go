// Package app is the metrics-gateway command: flags, validation, run.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/logs"
	"k8s.io/klog/v2"

	"github.com/metrics-gateway/metrics-gateway/pkg/server"
)

// Run parses args, validates them (reporting every problem at once) and runs
// the gateway until ctx is done. --help and --version print to stdout.
// "doctor" as the first argument runs the cluster checks instead, and
// "explain hpa NAME" explains an HPA's decision.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "doctor" {
		return runDoctor(ctx, args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "explain" {
		return runExplain(ctx, args[1:], stdout, stderr)
	}
	o := server.NewOptions()
	fs := pflag.NewFlagSet("metrics-gateway", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	named := o.Flags()
	for _, f := range named.Order {
		fs.AddFlagSet(named.FlagSet(f))
	}
	help := fs.BoolP("help", "h", false, "Show this help and exit.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *help {
		fmt.Fprintf(stdout, "metrics-gateway serves metrics.k8s.io (kubectl top, HPA) from an embedded TSDB fed by kubelet scrapes.\n\nUsage:\n  metrics-gateway [flags]\n")
		cliflag.PrintSections(stdout, named, 100)
		return nil
	}
	if o.ShowVersion {
		fmt.Fprintln(stdout, server.Version)
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %v", fs.Args())
	}
	if errs := o.Validate(); len(errs) > 0 {
		return fmt.Errorf("invalid flags: %w", errors.Join(errs...))
	}
	if err := o.ApplyLogging(); err != nil {
		return err
	}
	defer logs.FlushLogs()
	started := o.Memory.Apply(fs.Changed("gogc"), slog.New(logr.ToSlogHandler(klog.Background())))
	cfg, err := o.Config()
	if err != nil {
		return err
	}
	s, err := cfg.Complete()
	if err != nil {
		return err
	}
	go func() {
		s.WaitStarted(ctx)
		started()
	}()
	klog.InfoS("Starting metrics-gateway", "version", server.Version, "storagePath", o.StoragePath, "resolution", o.Kubelet.Resolution)
	return s.RunUntil(ctx)
}
