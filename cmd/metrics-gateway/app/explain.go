package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/metrics-gateway/metrics-gateway/pkg/autoscaling"
	"github.com/metrics-gateway/metrics-gateway/pkg/server"
	"github.com/metrics-gateway/metrics-gateway/pkg/web"
)

// KubectlPlugin is the name under which the binary runs as `kubectl
// explain-hpa` (a copy or link on the PATH).
const KubectlPlugin = "kubectl-explain_hpa"

// runExplain is `metrics-gateway explain hpa NAME`: it replays the HPA
// controller's decision from the HPA, its target, pods and the values the
// metrics APIs serve now, and prints the verdict, then each metric's table.
func runExplain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var kubeconfig, namespace, output, gateway, gatewayCA, at string
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
	fs.StringVar(&gateway, "gateway", "", "Ask the gateway instead of replaying here: its URL, e.g. http://127.0.0.1:9090 through `kubectl port-forward` to its --query-api-insecure-bind-address, or https://HOST:PORT of its secure port with the kubeconfig's credentials. The gateway adds the recorded history: the stabilization windows see its recommendations, and --at works.")
	fs.StringVar(&gatewayCA, "gateway-ca", "", "CA bundle that signed the gateway's serving certificate, for an https --gateway.")
	fs.StringVar(&at, "at", "", "Explain the decision at this past time (RFC 3339, unix seconds, or a duration ago such as -10m), from the gateway's recorded history; needs --gateway.")
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
	var e autoscaling.Explanation
	if gateway != "" {
		for _, f := range []string{"tolerance", "cpu-initialization-period", "initial-readiness-delay", "downscale-stabilization"} {
			if fs.Changed(f) {
				return fmt.Errorf("explain: --%s applies to a local replay; the gateway replays with kube-controller-manager's defaults", f)
			}
		}
		e, err = explainFromGateway(ctx, cfg, gateway, gatewayCA, namespace, fs.Arg(1), at, time.Now())
	} else {
		if at != "" {
			return fmt.Errorf("explain: --at needs --gateway: the history is in the gateway's storage")
		}
		e, err = explainHere(ctx, cfg, namespace, fs.Arg(1), o)
	}
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

// explainHere replays with the clients the HPA controller uses, without
// history.
func explainHere(ctx context.Context, cfg *rest.Config, namespace, name string, o autoscaling.Options) (autoscaling.Explanation, error) {
	r, err := autoscaling.NewAPIReader(cfg)
	if err != nil {
		return autoscaling.Explanation{}, err
	}
	o.Timing.Now = time.Now()
	return autoscaling.Explain(ctx, r, namespace, name, o)
}

// explainFromGateway asks the gateway's explain endpoint (pkg/web).
func explainFromGateway(ctx context.Context, cfg *rest.Config, gateway, ca, namespace, name, at string, now time.Time) (autoscaling.Explanation, error) {
	var e autoscaling.Explanation
	u, err := url.Parse(gateway)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return e, fmt.Errorf("--gateway %q: want http://HOST:PORT or https://HOST:PORT", gateway)
	}
	q := url.Values{}
	if at != "" {
		t, err := parseAt(at, now)
		if err != nil {
			return e, err
		}
		q.Set("at", t.UTC().Format(time.RFC3339Nano))
	}
	u = u.JoinPath(web.ExplainPrefix, "hpa", namespace, name)
	u.RawQuery = q.Encode()
	client := &http.Client{Timeout: time.Minute}
	if u.Scheme == "https" {
		c := rest.AnonymousClientConfig(cfg)
		c.BearerToken, c.BearerTokenFile, c.CertData, c.CertFile, c.KeyData, c.KeyFile = cfg.BearerToken, cfg.BearerTokenFile, cfg.CertData, cfg.CertFile, cfg.KeyData, cfg.KeyFile
		c.Host, c.TLSClientConfig.CAData, c.TLSClientConfig.CAFile, c.TLSClientConfig.ServerName = gateway, nil, ca, ""
		if client, err = rest.HTTPClientFor(c); err != nil {
			return e, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return e, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return e, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return e, err
	}
	if resp.StatusCode != http.StatusOK {
		var status metav1.Status
		if json.Unmarshal(body, &status) == nil && status.Message != "" {
			return e, fmt.Errorf("%s: %d %s", u.Redacted(), resp.StatusCode, status.Message)
		}
		return e, fmt.Errorf("%s: %s %.200s", u.Redacted(), resp.Status, body)
	}
	return e, json.Unmarshal(body, &e)
}

// parseAt reads --at: RFC 3339, unix seconds, or a negative duration.
func parseAt(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d > 0 {
			return time.Time{}, fmt.Errorf("--at %s: a duration is how long ago, negative (-%s)", s, s)
		}
		return now.Add(d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return time.UnixMilli(int64(f * 1000)), nil
	}
	return time.Time{}, fmt.Errorf("--at %q: want an RFC 3339 time, unix seconds or a negative duration", s)
}

// printExplanation writes the verdict first, then the replicas' path and
// each metric with its pods.
func printExplanation(w io.Writer, e autoscaling.Explanation) error {
	fmt.Fprintf(w, "%s/%s: %s\n\n", e.Namespace, e.Name, e.Verdict)
	fmt.Fprintf(w, "replicas: current %d, min %d, max %d; highest proposal %d (%s), after stabilization %d, desired %d (%s)\n",
		e.Current, e.Min, e.Max, e.Proposal, e.Winner, e.Stabilized, e.Desired, e.LimitReason)
	if e.Past {
		fmt.Fprintf(w, "at %s: the target's replicas and pods as the gateway recorded them then; the HPA's spec as it is now\n", e.At.UTC().Format(time.RFC3339))
	}
	if e.HistoryReconstructed {
		fmt.Fprintln(w, "history: recommendations and scale events reconstructed from the gateway's recorded replay (not the controller's memory)")
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
