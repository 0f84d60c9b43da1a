package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/metrics-gateway/metrics-gateway/pkg/autoscaling"
	"github.com/metrics-gateway/metrics-gateway/pkg/server"
)

// KubectlPlugin is the name under which the binary runs as `kubectl
// explain-hpa` (a copy or link on the PATH).
const KubectlPlugin = "kubectl-explain_hpa"

// runExplain is `metrics-gateway explain hpa NAME`: it replays the HPA
// controller's decision from the HPA, its target, pods and the values the
// metrics APIs serve now, and prints the verdict, then each metric's table.
func runExplain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var kubeconfig, namespace, output string
	o := autoscaling.Options{Tolerance: autoscaling.DefaultTolerance, Timing: autoscaling.DefaultTiming(time.Time{}), DownscaleStabilization: autoscaling.DefaultDownscaleStabilization}
	tolerance := autoscaling.DefaultTolerance.Up
	fs := pflag.NewFlagSet("metrics-gateway explain hpa", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&kubeconfig, "kubeconfig", "", "Path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config, then in-cluster).")
	fs.StringVarP(&namespace, "namespace", "n", "default", "Namespace of the HorizontalPodAutoscaler.")
	fs.StringVarP(&output, "output", "o", "text", "text, or json for tools.")
	fs.Float64Var(&tolerance, "tolerance", tolerance, "kube-controller-manager's --horizontal-pod-autoscaler-tolerance (an HPA's own behavior tolerance takes precedence).")
	fs.DurationVar(&o.Timing.CPUInitializationPeriod, "cpu-initialization-period", o.Timing.CPUInitializationPeriod, "kube-controller-manager's --horizontal-pod-autoscaler-cpu-initialization-period.")
	fs.DurationVar(&o.Timing.InitialReadinessDelay, "initial-readiness-delay", o.Timing.InitialReadinessDelay, "kube-controller-manager's --horizontal-pod-autoscaler-initial-readiness-delay.")
	fs.DurationVar(&o.DownscaleStabilization, "downscale-stabilization", o.DownscaleStabilization, "kube-controller-manager's --horizontal-pod-autoscaler-downscale-stabilization (the scale-down window of HPAs that set none).")
	help := fs.BoolP("help", "h", false, "Show this help and exit.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *help {
		fmt.Fprintf(stdout, "metrics-gateway explain hpa NAME replays the HPA controller's decision for an HPA and says why it wants the replicas it wants: each metric's per-pod values, the pods left out and why, the tolerance, each proposal, the stabilization window and the limits.\n\nUsage:\n  metrics-gateway explain hpa NAME [flags]\n  kubectl explain-hpa NAME [flags]   (the binary installed as %s)\n\nFlags:\n", KubectlPlugin)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil
	}
	if fs.NArg() != 2 || fs.Arg(0) != "hpa" {
		return fmt.Errorf("explain: want `explain hpa NAME`, got %v", fs.Args())
	}
	if output != "text" && output != "json" {
		return fmt.Errorf("explain: --output %q: want text or json", output)
	}
	if tolerance < 0 {
		return fmt.Errorf("explain: --tolerance %v is negative", tolerance)
	}
	o.Tolerance = autoscaling.Tolerance{Down: tolerance, Up: tolerance}
	cfg, err := server.LoadClientConfig(kubeconfig)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	r, err := autoscaling.NewAPIReader(cfg)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	o.Timing.Now = time.Now()
	e, err := autoscaling.Explain(ctx, r, namespace, fs.Arg(1), o)
	if err != nil {
		return fmt.Errorf("explain: %w", err)
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(e)
	}
	return printExplanation(stdout, e)
}

// printExplanation writes the verdict first, then the replicas' path and
// each metric with its pods.
func printExplanation(w io.Writer, e autoscaling.Explanation) error {
	fmt.Fprintf(w, "%s/%s: %s\n\n", e.Namespace, e.Name, e.Verdict)
	fmt.Fprintf(w, "replicas: current %d, min %d, max %d; highest proposal %d (%s), after stabilization %d, desired %d (%s)\n",
		e.Current, e.Min, e.Max, e.Proposal, e.Winner, e.Stabilized, e.Desired, e.LimitReason)
	if e.HistoryReconstructed {
		fmt.Fprintln(w, "history: recommendations and scale events reconstructed from recorded series")
	} else {
		fmt.Fprintln(w, "history: none; the stabilization windows and rate limits saw no earlier recommendations or changes")
	}
	for _, m := range e.Metrics {
		fmt.Fprintf(w, "\nmetric %s (%s, target %s)", m.Name, m.Type, m.Target)
		if m.Error != "" {
			fmt.Fprintf(w, ": could not be read: %s\n", m.Error)
			continue
		}
		fmt.Fprintf(w, ": current %s, usage ratio %.3f, proposal %d\n  %s\n", milli(m.Verdict.Current, m.Target), m.Verdict.Ratio, m.Verdict.Proposal, m.Verdict.Reason)
		if len(m.Verdict.Pods) == 0 {
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  POD\tSTATE\tVALUE\tREQUEST\tASSUMED\tWHY")
		for _, p := range m.Verdict.Pods {
			assumed := ""
			if p.Assumed != nil {
				assumed = fmt.Sprintf("%dm", *p.Assumed)
			}
			request := ""
			if p.Request != 0 {
				request = fmt.Sprintf("%dm", p.Request)
			}
			fmt.Fprintf(tw, "  %s\t%s\t%dm\t%s\t%s\t%s\n", p.Name, p.State, p.Value, request, assumed, p.Reason)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// milli shows a metric's current value: a percent for utilization
// targets, milli-units otherwise.
func milli(v int64, target string) string {
	if strings.Contains(target, "utilization") {
		return fmt.Sprintf("%d%%", v)
	}
	return fmt.Sprintf("%dm", v)
}
