package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/url"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/metrics-gateway/metrics-gateway/test/env"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// testHPAScalesOnCPU: an autoscaling/v2 HPA (cpu Utilization 50%) over a
// Deployment whose pods burn cpu per request. Load spread over the pods
// raises usage, the HPA controller reads it through the aggregator from
// the gateway, and scales to what the HPA formula predicts; without load it
// scales back to its minimum.
func testHPAScalesOnCPU(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	const (
		rps        = 160
		base       = 0.005 // cores per pod at rest
		perRequest = 0.001 // cores per request/s
		request    = 0.1   // cores requested per pod
		target     = 0.5   // utilization
	)
	d := deployment{ns: "e2e-hpa", name: "podinfo", replicas: 2, containers: []string{"app"}, cpuRequest: "100m", cpuBase: base, cpuPerRequest: perRequest, memory: 64 << 20}
	d.create(ctx, t)
	// kubectl top reads v1 (testTopReadsV1) and nothing else here reads pod
	// metrics: v1beta1 pod lists from now on are the HPA controller's.
	betaBefore := podMetricsRequests(ctx, t, "v1beta1")
	createHPA(ctx, t, d, 2, 10, autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
		Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](50)},
	}})
	// At rest the HPA sees 5% and holds its minimum: this also proves it reads metrics.
	eventually(t, 2*time.Minute, "HPA reads cpu utilization", func() error {
		h, err := e.Client.AutoscalingV2().HorizontalPodAutoscalers(d.ns).Get(ctx, d.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(h.Status.CurrentMetrics) == 0 || h.Status.CurrentMetrics[0].Resource == nil || h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization == nil {
			return fmt.Errorf("no current cpu utilization yet: %+v", h.Status.Conditions)
		}
		return nil
	})
	if x := explainHPA(ctx, t, d); x.Desired != 2 || !strings.HasPrefix(x.Verdict, "held at 2") || len(x.Metrics) != 1 || len(x.Metrics[0].Verdict.Pods) != 2 {
		t.Errorf("explain at rest: %+v, want held at 2 with both pods", x)
	} else {
		t.Logf("explain at rest: %s", x.Verdict)
	}
	if after := podMetricsRequests(ctx, t, "v1beta1"); after <= betaBefore {
		t.Errorf("the HPA read cpu utilization, but the gateway served no v1beta1 pod metrics meanwhile (%v before, %v after)", betaBefore, after)
	}

	// The load is chosen so that the HPA's answer is robust to measurement
	// noise: from 2 replicas the ratio is 1.7 (→ 4), at 4 it is 0.9, inside
	// the 10% tolerance and far from both edges.
	want := int32(predictReplicas(2, 10, base, perRequest, rps, request, target))
	t.Logf("load %d req/s: the HPA formula predicts %d replicas", rps, want)
	explainSteady(ctx, t, d)
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan int64, 1)
	go func() {
		n, _ := e.Load(loadCtx, d.ns, "app="+d.name, rps)
		loadDone <- n
	}()
	start := time.Now()
	// explain names the count the controller is about to set.
	explainNames(ctx, t, d, want, 4*time.Minute)
	eventually(t, 4*time.Minute, fmt.Sprintf("scale 2 → %d", want), func() error { return replicas(ctx, d, want) })
	t.Logf("scaled up to %d in %v", want, time.Since(start).Round(time.Second))
	// And stays there: no overshoot over the next HPA periods.
	for i := 0; i < 4; i++ {
		time.Sleep(5 * time.Second)
		if err := replicas(ctx, d, want); err != nil {
			t.Fatalf("after reaching %d: %v", want, err)
		}
	}
	heldAt := time.Now()
	if x := explainHPA(ctx, t, d); x.Desired != want || !strings.HasPrefix(x.Verdict, fmt.Sprintf("held at %d", want)) {
		t.Errorf("explain under load at %d replicas: %s", want, x.Verdict)
	} else {
		t.Logf("explain under load: %s", x.Verdict)
	}
	// The text form, as a user reads it (docs/explain.md quotes a run).
	// The local replay (no --gateway) reads what the controller reads
	// through the API server, with the controller's settings.
	textArgs := append([]string{"explain", "hpa", d.name, "-n", d.ns, "--kubeconfig", e.Cluster.Kubeconfig}, e.Cluster.HPAControllerFlags()...)
	if text, err := exec.CommandContext(ctx, e.Gateway.Bin(), textArgs...).CombinedOutput(); err != nil || !strings.Contains(string(text), "POD") {
		t.Errorf("explain (text): %v\n%s", err, text)
	} else {
		t.Logf("$ metrics-gateway explain hpa %s -n %s\n%s", d.name, d.ns, text)
	}
	// The page shows the same, in a real browser.
	checkHPAPage(ctx, t, d, want)
	stopLoad()
	t.Logf("load generator sent %d requests", <-loadDone)
	start = time.Now()
	// Usage falls at once, but the controller's downscale stabilization
	// window (30s here) holds the count: explain says so from the
	// recommendations the gateway recorded.
	explainSays(ctx, t, d, want, time.Minute, fmt.Sprintf("held at %d", want), "scale-down stabilization")
	explainNames(ctx, t, d, 2, 4*time.Minute)
	eventually(t, 4*time.Minute, "scale back to 2", func() error { return replicas(ctx, d, 2) })
	t.Logf("scaled down to 2 in %v", time.Since(start).Round(time.Second))
	checkAtReproduces(ctx, t, d)

	// The gateway recorded the way up and back (docs/autoscaling.md): the
	// count the HPA held under load, at the time it held it (on the way up
	// the controller may pass a count above it: a fresh-clone make test once
	// saw 3 → 5 → 4), and the count it is back to.
	sel := fmt.Sprintf(`{namespace=%q,horizontalpodautoscaler=%q}`, d.ns, d.name)
	eventually(t, 30*time.Second, "autoscaling history recorded", func() error {
		for expr, expect := range map[string]float64{
			fmt.Sprintf("kube_horizontalpodautoscaler_status_desired_replicas%s @ %d", sel, heldAt.Unix()):                            float64(want),
			"kube_horizontalpodautoscaler_status_current_replicas" + sel:                                                              2,
			`kube_horizontalpodautoscaler_spec_target_metric{metric_name="cpu",metric_target_type="utilization",namespace="e2e-hpa"}`: 50,
		} {
			got, err := promScalar(ctx, expr)
			if err != nil {
				return err
			}
			if got != expect {
				return fmt.Errorf("%s = %v, want %v", expr, got, expect)
			}
		}
		return nil
	})
}

// promScalar evaluates expr through the gateway's query API and returns the
// value of its one series.
func promScalar(ctx context.Context, expr string) (float64, error) {
	code, body, err := e.Gateway.Get(ctx, "/prometheus/api/v1/query?query="+url.QueryEscape(expr))
	if err != nil {
		return 0, err
	}
	var resp struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &resp); err != nil || code != 200 {
		return 0, fmt.Errorf("%s: %d %s", expr, code, body)
	}
	if len(resp.Data.Result) != 1 {
		return 0, fmt.Errorf("%s: %d series: %s", expr, len(resp.Data.Result), body)
	}
	v, _ := resp.Data.Result[0].Value[1].(string)
	return strconv.ParseFloat(v, 64)
}

func replicas(ctx context.Context, d deployment, want int32) error {
	dep, err := e.Client.AppsV1().Deployments(d.ns).Get(ctx, d.name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got := ptr.Deref(dep.Spec.Replicas, 0); got != want {
		h, _ := e.Client.AutoscalingV2().HorizontalPodAutoscalers(d.ns).Get(ctx, d.name, metav1.GetOptions{})
		return fmt.Errorf("deployment wants %d replicas (HPA sees %s), want %d", got, currentMetrics(h), want)
	}
	return nil
}

// currentMetrics says what an HPA last read, whatever the metric type.
func currentMetrics(h *autoscalingv2.HorizontalPodAutoscaler) string {
	if h == nil || len(h.Status.CurrentMetrics) == 0 {
		return "no metrics"
	}
	var parts []string
	for _, m := range h.Status.CurrentMetrics {
		var cur autoscalingv2.MetricValueStatus
		switch {
		case m.Resource != nil:
			cur = m.Resource.Current
		case m.Pods != nil:
			cur = m.Pods.Current
		case m.External != nil:
			cur = m.External.Current
		case m.Object != nil:
			cur = m.Object.Current
		}
		switch {
		case cur.AverageUtilization != nil:
			parts = append(parts, fmt.Sprintf("%s %d%%", m.Type, *cur.AverageUtilization))
		case cur.AverageValue != nil:
			parts = append(parts, fmt.Sprintf("%s average %s", m.Type, cur.AverageValue))
		case cur.Value != nil:
			parts = append(parts, fmt.Sprintf("%s value %s", m.Type, cur.Value))
		}
	}
	return strings.Join(parts, ", ")
}

var requestsLine = regexp.MustCompile(`(?m)^apiserver_request_total\{([^}]*)\} (\S+)$`)

// podMetricsRequests is how many requests for metrics.k8s.io pods of
// version the gateway has answered (apiserver_request_total, every verb and
// code).
func podMetricsRequests(ctx context.Context, t *testing.T, version string) float64 {
	t.Helper()
	return podMetricsRequestsOf(ctx, t, e.Gateway, version)
}

// podMetricsRequestsOf is podMetricsRequests of gateway g.
func podMetricsRequestsOf(ctx context.Context, t *testing.T, g *env.Gateway, version string) float64 {
	t.Helper()
	code, body, err := g.Get(ctx, "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("gateway /metrics: %d %v", code, err)
	}
	var n float64
	for _, m := range requestsLine.FindAllStringSubmatch(body, -1) {
		labels := m[1]
		if strings.Contains(labels, `group="metrics.k8s.io"`) && strings.Contains(labels, `resource="pods"`) && strings.Contains(labels, `version="`+version+`"`) {
			v, _ := strconv.ParseFloat(m[2], 64)
			n += v
		}
	}
	return n
}

// createHPA makes an autoscaling/v2 HPA named after d, scaling it between
// least and most replicas on one metric.
func createHPA(ctx context.Context, t *testing.T, d deployment, least, most int32, metric autoscalingv2.MetricSpec) {
	t.Helper()
	hpa := env.HPA(d.ns, d.name, least, most, metric)
	// One an earlier scenario made is kept (see deployment.create).
	if _, err := e.Client.AutoscalingV2().HorizontalPodAutoscalers(d.ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil && !isAlreadyExists(err) {
		t.Fatal(err)
	}
}

// hpaReadsMetric waits until the HPA of d reports a current value and is
// able to scale, which proves the controller reads the metric through the
// aggregator.
func hpaReadsMetric(ctx context.Context, t *testing.T, d deployment, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "HPA "+d.ns+"/"+d.name+" reads its metric", func() error {
		h, err := e.Client.AutoscalingV2().HorizontalPodAutoscalers(d.ns).Get(ctx, d.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range h.Status.Conditions {
			if c.Type == autoscalingv2.ScalingActive && c.Status != corev1.ConditionTrue {
				return fmt.Errorf("ScalingActive %s: %s: %s", c.Status, c.Reason, c.Message)
			}
		}
		if currentMetrics(h) == "no metrics" {
			return fmt.Errorf("no current metric yet: %+v", h.Status.Conditions)
		}
		return nil
	})
}

// predictReplicas runs the HPA controller's algorithm for a Utilization
// target on the simulated model.
func predictReplicas(n, most int, base, perRequest float64, rps int, request, target float64) int {
	return hpaConverge(n, 1, most, func(n int) float64 {
		util := (base + perRequest*float64(rps)/float64(n)) / request
		return util / target
	})
}

// hpaConverge runs the HPA controller's algorithm from n replicas until it
// settles: desired = ceil(n × ratio(n)), unchanged while the ratio is
// within the default 10% tolerance, clamped to [least, most]. ratio is the
// metric's value over its target at n replicas.
func hpaConverge(n, least, most int, ratio func(n int) float64) int {
	for i := 0; i < 20; i++ {
		r := ratio(n)
		if math.Abs(1-r) <= 0.1 {
			return n
		}
		next := int(math.Ceil(float64(n) * r))
		next = max(min(next, most), least)
		if next == n {
			return n
		}
		n = next
	}
	return n
}
