package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

// maxGatewayRSS bounds the gateway's peak resident memory with the hostile
// targets around. It starts near 100 MiB and peaked near 180 MiB in this
// test; undefended, the 100 MB body alone would be read whole and the
// 100,000 series stored. The bound leaves room for the garbage collector's
// timing; the limit counters below say which defence held.
const maxGatewayRSS = 300 << 20

// maxHeadGrowth bounds how much the head grows while the hostile targets
// are around: under half of what one rejected churn scrape would add
// (10,000). What the scenario adds legitimately is about 1,500: the four
// hostile pods and the four workers the External HPA adds each bring about
// 180 cAdvisor series and their scrape reports.
const maxHeadGrowth = 4000

// testHostileTargets: five annotated pods whose /metrics is garbage, a
// streamed 100 MB body, 100,000 series with one label value each,
// 100,000 fresh series every scrape, and a 302 to a canary server that must
// receive nothing. The
// gateway's default limits (bodySizeLimit 10MB, sampleLimit 10000) must
// fail each scrape of them: every one counted in
// metrics_gateway_scrape_errors_total with target_up 0, over several
// rounds, the big ones by Prometheus' own limit counters, while the
// gateway stays live and ready, its memory and head series bounded, the
// good pods' custom metric answers and an HPA still scales (the workers of
// the external scenario, on a new queue depth).
//
// A fourth pod serves 100,000 fresh ids on every scrape
// (sim.MetricsChurn). The TSDB creates series on Append, so before the
// gateway deferred new series to Commit each rejected scrape left
// sampleLimit empty series in the head until its next compaction
// (prometheus/prometheus#16427): +10,000 series a scrape. The head-series
// bound below (far under one scrape's worth) fails if that comes back.
func testHostileTargets(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	const ns = "e2e-hostile"
	modes := []sim.MetricsMode{sim.MetricsGarbage, sim.MetricsHuge, sim.MetricsCardinality, sim.MetricsChurn}
	// The good workloads the hostile ones must not disturb, before the
	// head is measured: podinfo's HPA and the workers' External HPA.
	ensurePodinfo(ctx, t)
	ensureQueueWorkers(ctx, t)
	before, err := gatewayMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	headBefore, _ := sampleValue(before, "metrics_gateway_head_series", nil)
	for _, m := range modes {
		d := deployment{ns: ns, name: string(m), replicas: 1, containers: []string{"app"}, memory: 32 << 20, scrape: true,
			annotations: map[string]string{sim.AnnotationMetricsMode: string(m)}}
		d.create(ctx, t)
	}
	// A fifth pod answers every scrape with a 302 to a canary inside the
	// "cluster network": following it would fetch whatever the pod names
	// and store it as the pod's own series.
	var canaryHits atomic.Int64
	canary := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		canaryHits.Add(1)
		_, _ = io.WriteString(w, "# TYPE internal_secret gauge\ninternal_secret 1\n")
	}))
	t.Cleanup(canary.Close)
	const redirect = "redirect"
	d := deployment{ns: ns, name: redirect, replicas: 1, containers: []string{"app"}, memory: 32 << 20, scrape: true,
		annotations: map[string]string{sim.AnnotationRedirectTo: canary.URL + "/metrics"}}
	d.create(ctx, t)
	t.Cleanup(func() { removeDeployments(t, ns) })
	targets := map[string]string{} // pod IP:port → mode
	for _, m := range append(modes, redirect) {
		pods, err := running(ctx, ns, "app="+string(m))
		if err != nil || len(pods) != 1 {
			t.Fatalf("%s: %d running pods, %v", m, len(pods), err)
		}
		targets[pods[0].Status.PodIP+":8080"] = string(m)
	}
	const depth = 22
	want := int32(hpaConverge(1, 1, 10, func(n int) float64 { return depth / float64(perWorker*n) }))
	setQueueDepth(ctx, t, depth)
	t.Cleanup(func() { setQueueDepth(context.Background(), t, 0) })

	const rounds = 3
	start := time.Now()
	eventually(t, rounds*e.Resolution+time.Minute, fmt.Sprintf("every hostile target failing %d scrapes", rounds), func() error {
		fams, err := gatewayMetrics(ctx)
		if err != nil {
			return err
		}
		for tgt, mode := range targets {
			lbls := map[string]string{"job": "kubernetes-pods", "target": tgt}
			errs, _ := sampleValue(fams, "metrics_gateway_scrape_errors_total", lbls)
			up, ok := sampleValue(fams, "metrics_gateway_scrape_target_up", lbls)
			if !ok || up != 0 || errs < rounds {
				return fmt.Errorf("%s (%s): up %v (reported %v), %v errors", mode, tgt, up, ok, errs)
			}
		}
		return nil
	})
	t.Logf("all %d hostile targets failed %d scrapes each within %v", len(targets), rounds, time.Since(start).Round(time.Second))
	if n := canaryHits.Load(); n > 0 {
		t.Errorf("the redirecting pod made the gateway fetch the canary %d times", n)
	}

	fams, err := gatewayMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"prometheus_target_scrapes_exceeded_body_size_limit_total", "prometheus_target_scrapes_exceeded_sample_limit_total"} {
		if n, _ := sampleValue(fams, c, nil); n < rounds {
			t.Errorf("%s %v, want at least %d", c, n, rounds)
		}
	}
	for _, path := range []string{"/livez", "/readyz"} {
		if code, body, err := e.Gateway.Get(ctx, path); err != nil || code != http.StatusOK {
			t.Errorf("gateway %s: %d %v %s", path, code, err, body)
		}
	}
	eventually(t, 30*time.Second, "the good pods' http_requests", func() error {
		_, err := podValues(ctx, customV1beta2, podinfo, "http_requests")
		return err
	})
	eventually(t, 2*time.Minute, fmt.Sprintf("workers scale 1 → %d with hostile targets around", want), func() error {
		return replicas(ctx, worker, want)
	})
	t.Logf("workers scaled to %d while the hostile targets failed", want)

	fams, err = gatewayMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Good targets never failed: they have no per-target series (up in
	// the TSDB covers them).
	for _, p := range mustRunning(ctx, t, podinfo) {
		lbls := map[string]string{"job": "kubernetes-pods", "target": p + ":8080"}
		if up, ok := sampleValue(fams, "metrics_gateway_scrape_target_up", lbls); ok && up != 1 {
			t.Errorf("good target %s: up %v", p, up)
		}
		if errs, ok := sampleValue(fams, "metrics_gateway_scrape_errors_total", lbls); ok && errs > 0 {
			t.Errorf("good target %s: %v scrape errors", p, errs)
		}
	}
	peak, err := e.Gateway.PeakRSS()
	if err != nil {
		t.Fatal(err)
	}
	rss, _ := sampleValue(fams, "process_resident_memory_bytes", nil)
	head, okHead := sampleValue(fams, "metrics_gateway_head_series", nil)
	rejected, _ := sampleValue(fams, "metrics_gateway_series_rejected_total", nil)
	t.Logf("gateway memory: peak RSS %.0f MiB (bound %d MiB), RSS now %.0f MiB; head series %.0f (%.0f before the hostile targets), series rejected %.0f",
		float64(peak)/(1<<20), maxGatewayRSS>>20, rss/(1<<20), head, headBefore, rejected)
	if peak > maxGatewayRSS {
		t.Errorf("gateway peak RSS %d MiB, over %d MiB", peak>>20, maxGatewayRSS>>20)
	}
	if !okHead || head-headBefore >= maxHeadGrowth {
		t.Errorf("head series %v, %v before (reported %v): grew by more than %d, rejected scrapes left series in the head", head, headBefore, okHead, maxHeadGrowth)
	}
	logTargetErrors(t, targets)
}

// gatewayMetrics reads the gateway's own /metrics directly.
func gatewayMetrics(ctx context.Context) (map[string]*dto.MetricFamily, error) {
	code, body, err := e.Gateway.Get(ctx, "/metrics")
	if err != nil || code != http.StatusOK {
		return nil, fmt.Errorf("gateway /metrics: %d %v", code, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(body))
}

// sampleValue is the value of the first sample of family name that carries
// every label of want; ok is false when there is none.
func sampleValue(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	for _, m := range fams[name].GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && got[k] == v
		}
		if !match {
			continue
		}
		switch {
		case m.GetCounter() != nil:
			return m.GetCounter().GetValue(), true
		case m.GetGauge() != nil:
			return m.GetGauge().GetValue(), true
		}
		return m.GetUntyped().GetValue(), true
	}
	return 0, false
}

// mustRunning returns the pod IPs of d's Running pods.
func mustRunning(ctx context.Context, t *testing.T, d deployment) []string {
	t.Helper()
	pods, err := running(ctx, d.ns, "app="+d.name)
	if err != nil || len(pods) == 0 {
		t.Fatalf("%s/%s: %d running pods, %v", d.ns, d.name, len(pods), err)
	}
	var ips []string
	for _, p := range pods {
		ips = append(ips, p.Status.PodIP)
	}
	return ips
}

// logTargetErrors logs the gateway's own account of each hostile target:
// the line it writes when a target starts failing, with the reason.
func logTargetErrors(t *testing.T, targets map[string]string) {
	t.Helper()
	b, err := os.ReadFile(e.Gateway.LogPath())
	if err != nil {
		t.Log(err)
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		for tgt, mode := range targets {
			if strings.Contains(line, `"`+tgt+`"`) && strings.Contains(line, "failing") {
				t.Logf("%s: %s", mode, line)
			}
		}
	}
}

// removeDeployments deletes every Deployment of ns and waits until its
// pods are gone, so later scenarios run without them.
func removeDeployments(t *testing.T, ns string) {
	ctx := context.Background()
	bg := metav1.DeletePropagationBackground
	if err := e.Client.AppsV1().Deployments(ns).DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{}); err != nil {
		t.Errorf("delete deployments in %s: %v", ns, err)
		return
	}
	eventually(t, 2*time.Minute, "pods of "+ns+" gone", func() error {
		pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if n := len(pods.Items); n > 0 {
			return fmt.Errorf("%d pods left", n)
		}
		return nil
	})
}
