package e2e

import (
	"context"
	"fmt"
	"math"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

// testZeroConfigCustomMetrics runs, on the gateway as env starts it (no
// --adapter-config), the HPA on a pods metric and the discovery of a new
// metric side by side: the HPA's waits are set by the rate window, and the
// discovery measurement needs only a quiet minute of its own.
func testZeroConfigCustomMetrics(t *testing.T) {
	ensureZeroConfig(context.Background(), t)
	t.Run("HPA scales on http_requests", func(t *testing.T) {
		t.Parallel()
		testHPAScalesOnRequests(t)
	})
	t.Run("a new metric is listed within one scrape interval", func(t *testing.T) {
		t.Parallel()
		testNewMetricDiscovery(t)
	})
}

// podinfo is the k8s-prom-hpa walkthrough's workload: pods annotated for
// scraping that count their requests in http_requests_total. Later
// scenarios read its metric again.
var podinfo = deployment{ns: "e2e-custom", name: "podinfo", replicas: 2, containers: []string{"app"}, cpuBase: 0.005, cpuLimit: "500m", memory: 64 << 20, scrape: true}

// testHPAScalesOnRequests is the k8s-prom-hpa walkthrough: an
// autoscaling/v2 HPA of type Pods on http_requests (the zero-config rate of
// http_requests_total, adaptive_rate over 2m), target 10 per pod, min 2,
// max 10.
//
// The load keeps the outcome deterministic. 26 req/s over two pods is 13
// each, and the HPA wants ceil(2 × r/10) = 3 for any reading r in (11, 15];
// adaptive_rate reads the step from the last interval within two scrapes
// (docs/custom-metrics.md), never above it. At 3 pods each gets 8.67: the
// old pods' last interval leaves their window's average at once, the new
// pod's its idle start, ratio 0.87 and ceil(3 × 0.87) = 3, with scale-down
// needing a sum below 20. A missing metric for the new pod only holds the
// HPA where it is.
func testHPAScalesOnRequests(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	const (
		rps    = 26
		target = 10 // requests per second per pod
	)
	d := podinfo
	d.create(ctx, t)
	createHPA(ctx, t, d, 2, 10, requestsPerPod(target))
	window := zeroConfigServed(ctx, t, d)
	hpaReadsMetric(ctx, t, d, 2*time.Minute)

	want := int32(hpaConverge(2, 2, 10, func(n int) float64 { return rps / float64(n) / target }))
	t.Logf("load %d req/s, rate window %v: the HPA formula predicts %d replicas", rps, window, want)
	explainSteady(ctx, t, d)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	loadDone := make(chan int64, 1)
	go func() {
		n, _ := e.Load(loadCtx, d.ns, "app="+d.name, rps)
		loadDone <- n
	}()
	start := time.Now()
	explainNames(ctx, t, d, want, window+2*time.Minute)
	eventually(t, window+2*time.Minute, fmt.Sprintf("scale 2 → %d", want), func() error { return replicas(ctx, d, want) })
	t.Logf("scaled up to %d in %v", want, time.Since(start).Round(time.Second))

	// Once the new pod's window has filled, every pod reports its share of
	// the load; the HPA holds its count the whole time.
	start = time.Now()
	path := customV1beta2 + "/namespaces/" + d.ns + "/pods/*/http_requests"
	query := url.Values{"labelSelector": {"app=" + d.name}}
	eventually(t, window+2*time.Minute, "every pod near its share of the load", func() error {
		if err := replicas(ctx, d, want); err != nil {
			t.Fatalf("after reaching %d: %v", want, err)
		}
		return loadShared(ctx, d, rps, 0.2)
	})
	t.Logf("per-pod rates within 20%% of %.2f after %v at %d replicas", float64(rps)/float64(want), time.Since(start).Round(time.Second), want)
	explainNames(ctx, t, d, want, 30*time.Second)
	logRaw(ctx, t, rawURL(path, query))
	logRaw(ctx, t, customV1beta2+"/namespaces/"+d.ns+"/metrics/http_requests")

	stopLoad()
	t.Logf("load generator sent %d requests", <-loadDone)
	start = time.Now()
	explainNames(ctx, t, d, 2, window+2*time.Minute)
	eventually(t, window+2*time.Minute, "scale back to 2", func() error { return replicas(ctx, d, 2) })
	t.Logf("scaled down to 2 in %v", time.Since(start).Round(time.Second))

	heldByPodWithoutMetric(ctx, t, d, window)
	checkAtReproduces(ctx, t, d)
}

// heldByPodWithoutMetric: a pod of another workload that shares the HPA's
// labels but exports no http_requests (a known HPA pitfall). At 24 req/s
// over the two podinfo pods, 12 each (ratio 1.2) wants 3, but the scale-up
// pass counts the pod without a value at 0: (12+12+0)/3 = 8, ratio 0.8,
// the other direction, so the controller holds at 2, and explain names
// that pod as missing and says why it holds.
func heldByPodWithoutMetric(ctx context.Context, t *testing.T, d deployment, window time.Duration) {
	t.Helper()
	other := deployment{ns: d.ns, name: "other", containers: []string{"app"}, cpuBase: 0.005, memory: 32 << 20}
	owner, err := e.Client.CoreV1().ConfigMaps(d.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "other-owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := other.object().Spec.Template
	pod := &corev1.Pod{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec}
	pod.Name, pod.Namespace = "other-shares-labels", d.ns
	// The same app label as the Deployment's pods; owned by another
	// controller, so the Deployment's ReplicaSet does not adopt it.
	pod.Labels = map[string]string{"app": d.name, "workload": "other"}
	pod.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID, Controller: ptr.To(true)}}
	if _, err := e.Client.CoreV1().Pods(d.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = e.Client.CoreV1().Pods(d.ns).Delete(ctx, pod.Name, metav1.DeleteOptions{})
		_ = e.Client.CoreV1().ConfigMaps(d.ns).Delete(ctx, owner.Name, metav1.DeleteOptions{})
	}()
	eventually(t, time.Minute, "the other workload's pod Ready", func() error {
		p, err := e.Client.CoreV1().Pods(d.ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not Ready: %s", p.Status.Phase)
	})
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go func() { _, _ = e.Load(loadCtx, d.ns, "app="+d.name+",workload!=other", 24) }()
	x := explainSays(ctx, t, d, 2, window+time.Minute, "held at 2", "missing pods filled in, the other direction")
	missing := false
	for _, p := range x.Metrics[0].Verdict.Pods {
		missing = missing || (p.Name == pod.Name && p.State == "missing")
	}
	if !missing {
		t.Errorf("explain does not list %s as missing: %+v", pod.Name, x.Metrics[0].Verdict.Pods)
	}
	// The controller agrees: it holds too.
	for range 4 {
		time.Sleep(5 * time.Second)
		if err := replicas(ctx, d, 2); err != nil {
			t.Fatalf("with a pod without the metric: %v", err)
		}
	}
}

// zeroConfigServed checks what the default rules serve for d's pods: the
// counter as a per-second rate under its name without _total, a pods and a
// namespaces metric, in both custom metrics versions; the gauge as is; no
// external metric. It returns the rate window the answers report.
func zeroConfigServed(ctx context.Context, t *testing.T, d deployment) time.Duration {
	t.Helper()
	var window time.Duration
	eventually(t, 2*time.Minute, "http_requests served for every pod", func() error {
		for _, v := range []string{customV1beta1, customV1beta2} {
			if err := requireListed(ctx, v, "pods/http_requests", "namespaces/http_requests", "pods/queue_depth"); err != nil {
				return err
			}
			vals, err := podValues(ctx, v, d, "http_requests")
			if err != nil {
				return err
			}
			for _, val := range vals {
				if window = val.window(); window <= 0 {
					return fmt.Errorf("%s: a rate without a window: %+v", v, val)
				}
			}
		}
		return nil
	})
	names, err := listedMetrics(ctx, customV1beta1)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasSuffix(n, "_total") {
			t.Errorf("counter listed under its series name: %s", n)
		}
	}
	if ext, err := listedMetrics(ctx, externalV1beta1); err != nil || len(ext) != 0 {
		t.Errorf("external metrics without an adapter config: %v %v", ext, err)
	}
	if _, err := metricValues(ctx, customV1beta2+"/namespaces/"+d.ns+"/pods/*/no_such_metric", nil); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("an unknown metric: want NotFound, got %v", err)
	}
	logRaw(ctx, t, rawURL(customV1beta2+"/namespaces/"+d.ns+"/pods/*/http_requests", url.Values{"labelSelector": {"app=" + d.name}}))
	return window
}

// loadShared checks that each of d's Running pods reports
// http_requests within tolerance of its share of rps, and that the
// namespace's value (all of them summed) is within tolerance of rps.
func loadShared(ctx context.Context, d deployment, rps, tolerance float64) error {
	vals, err := podValues(ctx, customV1beta2, d, "http_requests")
	if err != nil {
		return err
	}
	share := rps / float64(len(vals))
	var got []string
	ok := true
	for name, v := range vals {
		got = append(got, fmt.Sprintf("%s=%.2f", name, v.float()))
		ok = ok && math.Abs(v.float()-share) <= tolerance*share
	}
	slices.Sort(got)
	if !ok {
		return fmt.Errorf("per-pod http_requests %v, want %.2f ± %.0f%%", got, share, tolerance*100)
	}
	ns, err := metricValues(ctx, customV1beta2+"/namespaces/"+d.ns+"/metrics/http_requests", nil)
	if err != nil {
		return err
	}
	if len(ns) != 1 || ns[0].DescribedObject.Name != d.ns || math.Abs(ns[0].float()-rps) > tolerance*rps {
		return fmt.Errorf("namespace http_requests %+v, want one value %v ± %.0f%%", ns, rps, tolerance*100)
	}
	return nil
}

// logRaw logs what kubectl get --raw prints for path, so a reader sees the
// API's answer as a user would.
func logRaw(ctx context.Context, t *testing.T, path string) {
	t.Helper()
	out, err := e.Kubectl(ctx, "get", "--raw", path)
	if err != nil {
		t.Errorf("kubectl get --raw %s: %v", path, err)
		return
	}
	t.Logf("kubectl get --raw '%s':\n%s", path, out)
}

// discoverySlack is what "listed within one scrape interval" allows on top
// of the interval, measured from the pod reported Running: Prometheus'
// discovery and scrape managers each batch updates for up to 1s in the
// gateway, the metric list is cached for 1s, this test polls every 250ms,
// and one request through the aggregator takes some milliseconds.
const discoverySlack = 5 * time.Second

// testNewMetricDiscovery: a pod whose /metrics carries a metric no other
// pod has. From the moment it is Running, the gateway has to learn about
// it (pod watch), start scraping it (the first scrape of a new target comes
// at an offset within one interval) and list the new metric; the measured
// delay must stay within one scrape interval plus discoverySlack. Then the
// metric answers, for the pod and its namespace.
func testNewMetricDiscovery(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	const metric, value = "e2e_probe_jobs_waiting", 7
	d := deployment{ns: "e2e-discovery", name: "probe", replicas: 1, containers: []string{"app"}, memory: 32 << 20, scrape: true,
		annotations: map[string]string{sim.AnnotationExtraMetric: fmt.Sprintf("%s=%d", metric, value)}}
	listed := func() error { return requireListed(ctx, customV1beta1, "pods/"+metric) }
	if err := listed(); err == nil {
		t.Fatalf("%s listed before any pod exposes it", metric)
	}
	created := time.Now()
	d.submit(ctx, t)
	pollEvery(t, 100*time.Millisecond, 2*time.Minute, "probe pod Running", func() error {
		return runningPods(ctx, d.ns, "app="+d.name, 1)
	})
	runningAt := time.Now()
	pollEvery(t, 250*time.Millisecond, 3*e.Resolution+time.Minute, metric+" listed", listed)
	delay := time.Since(runningAt)
	bound := e.Resolution + discoverySlack
	t.Logf("pod Running %v after create; %s listed %v after Running (bound: scrape interval %v + %v)",
		runningAt.Sub(created).Round(10*time.Millisecond), metric, delay.Round(10*time.Millisecond), e.Resolution, discoverySlack)
	if delay > bound {
		t.Errorf("%s listed %v after its pod was Running, more than %v", metric, delay.Round(10*time.Millisecond), bound)
	}
	eventually(t, 30*time.Second, metric+" answers", func() error {
		for _, v := range []string{customV1beta1, customV1beta2} {
			vals, err := podValues(ctx, v, d, metric)
			if err != nil {
				return err
			}
			for pod, val := range vals {
				if val.float() != value || val.window() != 0 {
					return fmt.Errorf("%s %s: %+v, want gauge value %d without a window", v, pod, val, value)
				}
			}
			ns, err := metricValues(ctx, v+"/namespaces/"+d.ns+"/metrics/"+metric, nil)
			if err != nil {
				return err
			}
			if len(ns) != 1 || ns[0].float() != value {
				return fmt.Errorf("%s namespace %s: %+v, want %d", v, d.ns, ns, value)
			}
		}
		return nil
	})
	logRaw(ctx, t, customV1beta1+"/namespaces/"+d.ns+"/pods/*/"+metric)
}
