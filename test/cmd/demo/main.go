// Command demo runs the gateway on a local control plane with simulated
// nodes, shows kubectl top, an HPA scaling on cpu and one scaling on a
// custom metric (http_requests, read from annotated pods with no
// configuration) up and back, with the gateway's explanation at each step,
// and leaves it all running, the autoscaling page included, for you to
// explore. `demo down` stops it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/metrics-gateway/metrics-gateway/test/env"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run() error {
	dir := flag.String("dir", "_output/demo", "state directory")
	nodes := flag.Int("nodes", 3, "simulated nodes")
	rps := flag.Int("rps", 160, "load sent to the demo deployment, requests per second")
	flag.Parse()
	abs, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	if flag.Arg(0) == "down" {
		if err := env.DownDir(abs); err != nil {
			return err
		}
		fmt.Println("demo: stopped; state left in", abs)
		return nil
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if err := env.DownDir(abs); err != nil {
		return fmt.Errorf("stop a previous demo: %w", err)
	}
	if err := os.RemoveAll(abs); err != nil {
		return err
	}
	e, err := env.Up(ctx, env.Options{Dir: abs, Nodes: *nodes, Detach: true})
	if err != nil {
		return err
	}
	if err := deploy(ctx, e); err != nil {
		return err
	}
	if err := show(ctx, e, *rps); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	if err := requestsStory(ctx, e); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Printf("\nThe cluster, %d simulated nodes and the gateway keep running.\n", *nodes)
	fmt.Printf("\nOpen the autoscaling page: %s/ui/\n", e.Gateway.PagesURL)
	fmt.Printf("  (the gateway's loopback listener; in a cluster: kubectl -n kube-system port-forward deploy/metrics-gateway 9090:9090)\n")
	fmt.Printf("\nOr explore with:\n\n")
	fmt.Printf("  export KUBECONFIG=%s\n", e.Cluster.Kubeconfig)
	fmt.Printf("  %s top pods -A --containers\n", filepath.Join(e.BinDir, "kubectl"))
	fmt.Printf("  %s explain hpa podinfo-http --gateway %s\n", e.Gateway.Bin(), e.Gateway.PagesURL)
	fmt.Printf("  %s explain hpa podinfo-http --gateway %s --at=-3m\n", e.Gateway.Bin(), e.Gateway.PagesURL)
	fmt.Printf("\nLogs are in %s. Stop everything with: make demo-down\n", abs)
	return nil
}

// deploy creates the demo workload: podinfo-like pods that burn 1m of cpu
// per request/s over a 5m base, 100m requested, and an HPA holding them at
// 50% cpu.
func deploy(ctx context.Context, e *env.Env) error {
	annotations := map[string]string{"sim.metrics-gateway.io/cpu-base": "0.005", "sim.metrics-gateway.io/cpu-per-request": "0.001"}
	requests := corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")}
	return create(ctx, e, "podinfo", annotations, requests, autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
		Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](50)},
	}})
}

// create makes a Deployment of two simulated podinfo pods (annotations on
// their template, requests on their container) and an HPA on metric, min 2
// and max 10, both in default.
func create(ctx context.Context, e *env.Env, name string, annotations map[string]string, requests corev1.ResourceList, metric autoscalingv2.MetricSpec) error {
	labels := map[string]string{"app": name}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "podinfo", Image: "sim/podinfo:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
					Resources: corev1.ResourceRequirements{Requests: requests},
				}}, TerminationGracePeriodSeconds: ptr.To[int64](0)},
			},
		},
	}
	if _, err := e.Client.AppsV1().Deployments("default").Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return err
	}
	_, err := e.Client.AutoscalingV2().HorizontalPodAutoscalers("default").Create(ctx, env.HPA("default", name, 2, 10, metric), metav1.CreateOptions{})
	return err
}

// waitTop runs kubectl until it lists at least rows objects with usage
// (kubectl shows <unknown> for nodes without metrics yet), for up to a minute.
func waitTop(ctx context.Context, e *env.Env, rows int, args ...string) (string, error) {
	deadline := time.Now().Add(time.Minute)
	for {
		out, err := e.Kubectl(ctx, args...)
		if err == nil && strings.Count(out, "\n")-1 >= rows && !strings.Contains(out, "<unknown>") {
			return out, nil
		}
		if time.Now().After(deadline) {
			return out, nil // show what there is
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// show prints kubectl top once usage is there, then loads the deployment
// and prints the HPA every 10s until it has scaled as predicted.
func show(ctx context.Context, e *env.Env, rps int) error {
	fmt.Println("\ndemo: waiting for two scrapes of every kubelet...")
	nodes, err := waitTop(ctx, e, e.Nodes, "top", "nodes")
	if err != nil {
		return err
	}
	pods, err := waitTop(ctx, e, 2, "top", "pods", "-A", "--containers")
	if err != nil {
		return err
	}
	fmt.Printf("\n$ kubectl top nodes\n%s\n$ kubectl top pods -A --containers\n%s", nodes, pods)
	want := predict(rps)
	fmt.Printf("\ndemo: sending %d requests/s to the podinfo pods; the HPA (50%% of 100m) should go 2 → %d\n", rps, want)
	loadCtx, stop := context.WithTimeout(ctx, 5*time.Minute)
	defer stop()
	go func() { _, _ = e.Load(loadCtx, "default", "app=podinfo", rps) }()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-loadCtx.Done():
			fmt.Println("demo: the HPA did not reach the prediction within 5 minutes; see the logs")
			return nil
		case <-tick.C:
		}
		out, _ := e.Kubectl(ctx, "get", "hpa", "podinfo", "--no-headers")
		fmt.Print("$ kubectl get hpa podinfo: " + out)
		if verdict, _, _ := strings.Cut(explain(ctx, e, "podinfo"), "\n"); verdict != "" {
			fmt.Println("  explain: " + verdict)
		}
		d, err := e.Client.AppsV1().Deployments("default").Get(ctx, "podinfo", metav1.GetOptions{})
		if err == nil && int(ptr.Deref(d.Spec.Replicas, 0)) == want {
			top, _ := waitTop(ctx, e, want, "top", "pods", "-l", "app=podinfo")
			fmt.Printf("\ndemo: scaled to %d replicas.\n$ kubectl top pods -l app=podinfo\n%s", want, top)
			fmt.Printf("\n$ metrics-gateway explain hpa podinfo\n%s\n", explain(ctx, e, "podinfo"))
			fmt.Println("demo: load stops now; the HPA scales back to 2 after its 30s stabilization window.")
			return nil
		}
	}
}

// explain is `metrics-gateway explain hpa NAME --gateway`: the gateway's
// replay with its recorded history, or why it failed.
func explain(ctx context.Context, e *env.Env, name string, extra ...string) string {
	args := append([]string{"explain", "hpa", name, "-n", "default", "--kubeconfig", e.Cluster.Kubeconfig, "--gateway", e.Gateway.PagesURL}, extra...)
	out, err := exec.CommandContext(ctx, e.Gateway.Bin(), args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(explain failed: %v: %s)", err, out)
	}
	return strings.TrimRight(string(out), "\n")
}

// follow prints the HPA and explain's verdict every 10s until the
// deployment has want replicas, for up to timeout. It returns whether it
// got there and when explain first said to scale.
func follow(ctx context.Context, e *env.Env, name string, want int, timeout time.Duration) (bool, time.Time) {
	var decided time.Time
	deadline := time.After(timeout)
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false, decided
		case <-deadline:
			fmt.Printf("demo: %s did not reach %d replicas within %v; see the logs\n", name, want, timeout)
			return false, decided
		case <-tick.C:
		}
		out, _ := e.Kubectl(ctx, "get", "hpa", name, "--no-headers")
		fmt.Print("$ kubectl get hpa " + name + ": " + out)
		now := time.Now()
		if verdict, _, _ := strings.Cut(explain(ctx, e, name), "\n"); verdict != "" {
			fmt.Println("  explain: " + verdict)
			if decided.IsZero() && strings.Contains(verdict, ": scale from ") {
				decided = now
			}
		}
		d, err := e.Client.AppsV1().Deployments("default").Get(ctx, name, metav1.GetOptions{})
		if err == nil && int(ptr.Deref(d.Spec.Replicas, 0)) == want {
			return true, decided
		}
	}
}

// requestsStory is the scenario the gateway exists for, with no
// configuration at all: pods annotated prometheus.io/scrape count their
// requests in http_requests_total, the gateway serves its rate as the pods
// metric http_requests, and an HPA (average 10 per pod) scales them 2 → 3
// under 26 requests/s and back when the load stops.
func requestsStory(ctx context.Context, e *env.Env) error {
	const name, rps = "podinfo-http", 26
	annotations := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "sim.metrics-gateway.io/cpu-base": "0.005"}
	if err := create(ctx, e, name, annotations, nil, autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "http_requests"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(10, resource.DecimalSI)},
	}}); err != nil {
		return err
	}
	fmt.Printf("\ndemo: %s: pods annotated prometheus.io/scrape that count requests in http_requests_total, and an HPA on the\n", name)
	fmt.Printf("pods metric http_requests (average 10 per pod), which the gateway serves with no configuration.\n")
	fmt.Printf("demo: sending %d requests/s: the HPA should go 2 → 3 (26/2 = 13 per pod, above 10 + 10%%)\n", rps)
	loadCtx, stop := context.WithCancel(ctx)
	defer stop()
	go func() { _, _ = e.Load(loadCtx, "default", "app="+name, rps) }()
	up, decided := follow(ctx, e, name, 3, 5*time.Minute)
	if !up {
		return nil
	}
	fmt.Printf("\ndemo: scaled to 3.\n$ metrics-gateway explain hpa %s --gateway %s\n%s\n", name, e.Gateway.PagesURL, explain(ctx, e, name))
	stop()
	fmt.Println("\ndemo: load stops now: the rate falls over its window, then the 30s stabilization window holds 3 before 2.")
	down, downDecided := follow(ctx, e, name, 2, 5*time.Minute)
	if decided.IsZero() {
		decided = downDecided // the 10s ticks may have missed the way up's
	}
	if down && !decided.IsZero() {
		at := decided.UTC().Format(time.RFC3339Nano)
		fmt.Printf("\ndemo: back to 2. A decision to scale, replayed from the gateway's recorded history:\n")
		fmt.Printf("$ metrics-gateway explain hpa %s --gateway %s --at %s\n%s\n", name, e.Gateway.PagesURL, at, explain(ctx, e, name, "--at", at))
	}
	return nil
}

// predict runs the HPA's algorithm (ceil(n × utilization/target), unchanged
// within its 10% tolerance) on the demo pods' model: 5m + 1m per req/s,
// 100m requested, 50% target.
func predict(rps int) int {
	n := 2
	for i := 0; i < 20; i++ {
		ratio := (0.005 + 0.001*float64(rps)/float64(n)) / 0.1 / 0.5
		next := min(10, int(math.Ceil(float64(n)*ratio)))
		if math.Abs(1-ratio) <= 0.1 || next == n {
			return n
		}
		n = next
	}
	return n
}
