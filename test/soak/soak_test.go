package soak

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/metrics-gateway/metrics-gateway/test/env"
	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

var duration = flag.Duration("soak.duration", 30*time.Minute, "how long the churning pods run before the gateway is SIGKILLed")

const (
	// churnPods expose churnSeries fresh series each on every scrape.
	// Half of them also expose their two own series, over the default
	// sampleLimit (10,000): every scrape is read, parsed and refused. The
	// other half stay at it (two fewer fresh series), so their series
	// reach the head until the head-series cap refuses them.
	churnPods   = 100
	churnSeries = 10_000
	// afterRestart is how long the workload is watched after the restart.
	afterRestart = 3 * time.Minute
)

// TestSoak: the gateway in a memory cgroup with manifests/base's
// limits.memory, beside 100 churning pods and a normal workload for
// -soak.duration, watched every 10 seconds (kubectl top, a list of every
// PodMetrics, both HPAs, the gateway's memory); then SIGKILL and restart
// on the same storage, and the same watch until the HPAs have read their
// metrics again. It fails on an OOM kill, an exit, a kubectl top or list
// that fails, an HPA that cannot read its metric before the kill, a WAL
// replay that does not complete, or churn that never reached the cap.
func TestSoak(t *testing.T) {
	ctx := context.Background()
	limit, err := shippedMemoryLimit()
	if err != nil {
		t.Fatal(err)
	}
	cg, err := env.NewMemoryCgroup("metrics-gateway-soak", limit)
	if err != nil {
		t.Fatalf("the soak runs the gateway under the shipped memory limit in a cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := cg.Remove(); err != nil {
			t.Log(err)
		}
	})
	cg.ResetPeak()
	dir, err := os.MkdirTemp("", "metrics-gateway-soak-")
	if err != nil {
		t.Fatal(err)
	}
	// Addresses apart from e2e's, the demo's and the benchmarks'.
	upCtx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	e, err := env.Up(upCtx, env.Options{Dir: dir, Nodes: 10, FirstNodeIP: "127.0.5.10", PodCIDRBase: "127.5.0.0", GatewayCgroup: cg})
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("component logs:\n%s", e.LogTails(40))
			t.Logf("state and logs kept in %s", dir)
		} else {
			defer os.RemoveAll(dir)
		}
		if err := e.Down(); err != nil {
			t.Log(err)
		}
	})
	t.Logf("gateway in memory cgroup %s, limit %d MiB (manifests/base's limits.memory)", cg.Dir(), limit>>20)

	w := startWorkload(ctx, t, e)
	wt := newWatch(e, w.hpas, cg)
	// The HPAs read their metric before the churn starts: a new pod's
	// request rate needs two scrapes, and the HPA controller reports that
	// wait as a failure (FailedGetPodsMetric).
	warm := time.Now()
	for !wt.hpasRead(ctx) {
		if time.Since(warm) > 3*time.Minute {
			t.Fatalf("the HPAs did not read their metrics within 3m before the churn")
		}
		time.Sleep(5 * time.Second)
	}
	t.Logf("normal workload running: %s; both HPAs read their metric after %v", w, time.Since(warm).Round(time.Second))
	for _, c := range []struct {
		name   string
		series int
	}{{"churn-over-limit", churnSeries}, {"churn-at-limit", churnSeries - 2}} {
		churn := workload{ns: "soak-churn", name: c.name, replicas: churnPods / 2, scrape: true, annotations: map[string]string{
			sim.AnnotationMetricsMode: string(sim.MetricsChurn), sim.AnnotationSeries: fmt.Sprint(c.series),
		}}
		churn.create(ctx, t, e)
	}
	t.Logf("%d churning pods running, each exposing %d fresh series per scrape (half of them %d, and their own 2); watching for %v",
		churnPods, churnSeries, churnSeries-2, *duration)

	wt.run(ctx, t, time.Now().Add(*duration), false)
	before := wt.report(t, "churn")
	fams := gatewayMetrics(ctx, t, e)
	head, rejected, overLimit := fams["metrics_gateway_head_series"], fams["metrics_gateway_series_rejected_total"], fams["prometheus_target_scrapes_exceeded_sample_limit_total"]
	t.Logf("head series %.0f, series rejected at the cap %.0f, scrapes over the sample limit %.0f, failed scrapes %.0f, GOMEMLIMIT %.0f MiB",
		head, rejected, overLimit, fams["metrics_gateway_scrape_errors_total"], fams["go_gc_gomemlimit_bytes"]/(1<<20))
	// Which defence holds depends on the at-limit pods' scrapes: in some
	// runs they too end over the sample limit (issue 14's note: not
	// understood yet), and the head never reaches the cap. Either way the
	// churn must have reached a defence, or the soak proved nothing.
	logChurnTargets(ctx, t, e)
	if rejected == 0 && overLimit == 0 {
		t.Errorf("the churn reached no defence (no series rejected at the head-series cap, no scrape over the sample limit): the soak proved nothing")
	}
	if rejected == 0 {
		t.Logf("the head-series cap was not reached in this run (head series %.0f): every churning pod's scrapes ended over the sample limit", head)
	}
	for _, f := range before.failures {
		t.Errorf("before the SIGKILL: %s", f)
	}

	// SIGKILL under full churn, as the kernel's OOM killer or a node
	// failure would, and the restart on the same storage: the WAL replays
	// every churned series the head held.
	killed := time.Now()
	if err := e.Gateway.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := e.Gateway.Start(ctx); err != nil {
		t.Fatalf("restart after SIGKILL: %v", err)
	}
	live := time.Since(killed)
	replay, err := walReplay(e.Gateway.LogPath())
	if err != nil {
		t.Error(err)
	}
	t.Logf("restarted: live %.1fs after the SIGKILL; %s", live.Seconds(), replay)
	wt.reset()
	wt.run(ctx, t, time.Now().Add(afterRestart), true)
	after := wt.report(t, "after the restart")
	t.Logf("after the SIGKILL: kubectl top answered again after %.1fs, every HPA read its metric again after %.1fs",
		after.firstTop.Sub(killed).Seconds(), after.hpasBack.Sub(killed).Seconds())
	if after.hpasBack.IsZero() {
		t.Errorf("after the restart the HPAs did not all read their metric within %v", afterRestart)
	}
	for _, f := range after.failures {
		t.Errorf("after the restart: %s", f)
	}
}

// shippedMemoryLimit is limits.memory of the gateway container in
// manifests/base.
func shippedMemoryLimit() (int64, error) {
	path := filepath.Join("..", "..", "manifests", "base", "deployment.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal(b, &d); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if m, ok := c.Resources.Limits["memory"]; ok {
			return m.Value(), nil
		}
	}
	return 0, fmt.Errorf("%s: no container with limits.memory", path)
}

// walReplay finds the TSDB's "WAL replay completed" line of the latest
// start in the gateway's log.
func walReplay(logPath string) (string, error) {
	b, err := os.ReadFile(logPath)
	if err != nil {
		return "", err
	}
	s := string(b)
	if i := strings.LastIndex(s, "\n==> "); i >= 0 {
		s = s[i:]
	}
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, "WAL replay completed") {
			return strings.TrimSpace(line), nil
		}
	}
	return "", fmt.Errorf("no \"WAL replay completed\" line in the restarted gateway's log %s", logPath)
}
