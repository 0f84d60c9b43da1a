package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/metrics-gateway/metrics-gateway/test/bench"
	"github.com/metrics-gateway/metrics-gateway/test/env"
)

// The scale-out scenario's workloads, in a namespace of their own: web
// (the http_requests Pods HPA), queue and worker (the External HPA on
// queue_depth), and spread, six scraped pods that only give the shards
// something to divide and the outage checks series that never change.
var (
	soWeb    = deployment{ns: "e2e-scaleout", name: "web", replicas: 2, containers: []string{"app"}, cpuBase: 0.02, memory: 32 << 20, scrape: true}
	soQueue  = deployment{ns: "e2e-scaleout", name: "queue", replicas: 1, containers: []string{"app"}, cpuBase: 0.02, memory: 32 << 20, scrape: true}
	soWorker = deployment{ns: "e2e-scaleout", name: "worker", replicas: 1, containers: []string{"app"}, cpuBase: 0.02, memory: 32 << 20}
	soSpread = deployment{ns: "e2e-scaleout", name: "spread", replicas: 6, containers: []string{"app"}, cpuBase: 0.02, memory: 32 << 20, scrape: true}
)

// scaleOut is the running scale-out setup: Thanos and two sharded
// gateway replicas writing to both receivers and querying through it.
type scaleOut struct {
	thanos   *env.Thanos
	gateways [2]*env.Gateway
}

// testScaleOut runs the scale-out mode (docs/scale-out.md) beside the
// single-process gateway: Thanos (two receivers, one querier) and two
// gateway replicas of a StatefulSet (--shards 2, the shard from the pod
// name's ordinal), each remote-writing what it scrapes to both receivers
// and answering the custom and external metrics APIs through the querier,
// with testdata/adapter-config.yaml's rules. The APIServices point at
// replica 0. It checks that every annotated pod is scraped by exactly one
// replica (the engine's up series), kubectl top from either replica, the
// http_requests HPA scaling 2 → 3 on values within 2% of the
// single-process gateway's, both HPAs scaling (web back to 2, the External
// HPA's workers 1 → 5 → 1) while a receiver is down for two minutes, no
// gap in that receiver's series once it is back (remote_write replays), a replica killed and restarted while the
// other shard goes on, and the engine unreachable: 503s naming it, fast,
// metrics.k8s.io answering and /readyz saying why.
func testScaleOut(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	so := startScaleOut(ctx, t)
	for _, d := range []deployment{soWeb, soQueue, soWorker, soSpread} {
		d.create(ctx, t)
	}
	t.Cleanup(func() { removeDeployments(t, soWeb.ns) })
	for _, gv := range env.GatewayAPIs() {
		if err := e.Cluster.RegisterAPIService(ctx, gv.Group, gv.Version, so.gateways[0].Port, so.gateways[0].CABundle); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { restoreAPIServices(t) })
	if err := e.WaitAPIsServed(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}

	createHPA(ctx, t, soWeb, 2, 10, requestsPerPod(10))
	createHPA(ctx, t, soWorker, 1, 10, autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(perWorker, resource.DecimalSI)},
	}})

	so.eachPodScrapedOnce(ctx, t)
	so.topFromEither(ctx, t)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	so.requestsHPA(loadCtx, t)
	so.receiverOutage(ctx, t, stopLoad)
	so.replicaKilled(ctx, t)
	so.engineUnreachable(ctx, t)
}

// startScaleOut starts Thanos and the two replicas; both stop when the
// test ends.
func startScaleOut(ctx context.Context, t *testing.T) *scaleOut {
	t.Helper()
	th, err := e.StartThanos(ctx)
	if err != nil {
		t.Fatal(err)
	}
	so := &scaleOut{thanos: th}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("thanos-query's log:\n%s", th.QueryLogTail(20))
			for _, r := range th.Receivers {
				t.Logf("%s's log:\n%s", r.Name, r.LogTail(20))
			}
		}
		th.Stop()
	})
	adapter, err := filepath.Abs("testdata/adapter-config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`apiVersion: metrics-gateway.io/v1alpha1
kind: GatewayConfig
pods:
  scrapeInterval: %dms
remoteWrite:
- url: %s
- url: %s
queryBackend:
  url: %s
`, e.Resolution.Milliseconds(), th.Receivers[0].RemoteWriteURL, th.Receivers[1].RemoteWriteURL, th.QueryURL)
	// Both start at once, as a StatefulSet with Parallel pod management
	// starts them.
	var errs [2]error
	var wg sync.WaitGroup
	start := time.Now()
	for i := range so.gateways {
		wg.Go(func() {
			so.gateways[i], errs[i] = e.Gateway.StartScaleOutReplica(ctx, env.ScaleOutReplica{
				Name: fmt.Sprintf("scaleout-%d", i), PodName: fmt.Sprintf("metrics-gateway-%d", i), Config: []byte(config),
				AdapterConfigFile: adapter, Args: []string{"--shards", "2"},
			})
		})
	}
	wg.Wait()
	for i, g := range so.gateways {
		if g == nil {
			continue
		}
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("scaleout-%d's log:\n%s", i, g.LogTail(40))
			}
			if err := g.Stop(); err != nil {
				t.Errorf("stop scaleout-%d: %v", i, err)
			}
		})
	}
	if err := errors.Join(errs[:]...); err != nil {
		t.Fatal(err)
	}
	t.Logf("scaleout-0 and scaleout-1 (shards 0 and 1 of 2) ready after %v", time.Since(start).Round(time.Second))
	return so
}

// engineQuery evaluates expr on the querier now; dedup false keeps the
// receivers' and replicas' copies apart.
func (so *scaleOut) engineQuery(ctx context.Context, expr string, dedup bool) ([]env.EngineSample, error) {
	return so.thanos.Query(ctx, expr, dedup)
}

// eachPodScrapedOnce: in the engine, every scraped pod of the cluster has
// up series from one replica only, the scenario's ten pods each from one,
// and both replicas own some.
func (so *scaleOut) eachPodScrapedOnce(ctx context.Context, t *testing.T) {
	t.Helper()
	ns := soWeb.ns
	var owners map[string]string
	eventually(t, 2*time.Minute, "every scraped pod of "+ns+" in the engine, from one replica", func() error {
		res, err := so.engineQuery(ctx, `count by (pod, gateway_replica) (up{job="kubernetes-pods", namespace="`+ns+`"})`, false)
		if err != nil {
			return err
		}
		owners = map[string]string{}
		for _, s := range res {
			pod, replica := s.Metric["pod"], s.Metric["gateway_replica"]
			if prev, ok := owners[pod]; ok && prev != replica {
				t.Fatalf("pod %s scraped by %s and %s", pod, prev, replica)
			}
			owners[pod] = replica
		}
		pods, err := running(ctx, ns, "app in (web, queue, spread)")
		if err != nil {
			return err
		}
		for _, p := range pods {
			if _, ok := owners[p.Name]; !ok {
				return fmt.Errorf("no up series for %s in the engine (have %v)", p.Name, owners)
			}
		}
		return nil
	})
	perReplica := map[string][]string{}
	for pod, r := range owners {
		perReplica[r] = append(perReplica[r], pod)
	}
	if len(perReplica) != 2 {
		t.Errorf("the scenario's pods by replica: %v; want both replicas to own some", perReplica)
	}
	// Cluster-wide, no pod twice.
	dup, err := so.engineQuery(ctx, `count by (namespace, pod) (count by (namespace, pod, gateway_replica) (up{job="kubernetes-pods"})) > 1`, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(dup) > 0 {
		t.Errorf("pods scraped by both replicas: %v", dup)
	}
	all, err := so.engineQuery(ctx, `count by (gateway_replica) (count by (namespace, pod, gateway_replica) (up{job="kubernetes-pods"}))`, false)
	if err != nil {
		t.Fatal(err)
	}
	split := map[string]float64{}
	for _, s := range all {
		split[s.Metric["gateway_replica"]] = s.Float()
	}
	t.Logf("scraped pods per replica, whole cluster: %v; this scenario's: %v", split, perReplica)
}

// topFromEither points metrics.k8s.io at each replica in turn and reads
// kubectl top pods through the aggregator: every running pod of the
// namespace, answered by that replica (its request count grows).
func (so *scaleOut) topFromEither(ctx context.Context, t *testing.T) {
	t.Helper()
	defer so.pointResourceAt(ctx, t, so.gateways[0])
	for i, g := range so.gateways {
		so.pointResourceAt(ctx, t, g)
		before := podMetricsRequestsOf(ctx, t, g, "v1")
		eventually(t, time.Minute, fmt.Sprintf("kubectl top pods from replica %d", i), func() error {
			out, err := e.Kubectl(ctx, "top", "pods", "-n", soWeb.ns, "--no-headers")
			if err != nil {
				code, body, gerr := g.Get(ctx, "/apis/metrics.k8s.io/v1/namespaces/"+soWeb.ns+"/pods")
				return fmt.Errorf("%w; the replica answers %d %v %.300s", err, code, gerr, body)
			}
			pods, err := running(ctx, soWeb.ns, "")
			if err != nil {
				return err
			}
			if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != len(pods) {
				return fmt.Errorf("kubectl top lists %d pods, %d run:\n%s", n, len(pods), out)
			}
			if after := podMetricsRequestsOf(ctx, t, g, "v1"); after <= before {
				return fmt.Errorf("replica %d answered no metrics.k8s.io v1 pods request (%v before, %v after)", i, before, after)
			}
			return nil
		})
		t.Logf("kubectl top pods -n %s answered by replica %d", soWeb.ns, i)
	}
}

// pointResourceAt points metrics.k8s.io (both versions) at g and waits
// until it answers through the aggregator.
func (so *scaleOut) pointResourceAt(ctx context.Context, t *testing.T, g *env.Gateway) {
	t.Helper()
	for _, gv := range env.GatewayAPIs() {
		if gv.Group != "metrics.k8s.io" {
			continue
		}
		if err := e.Cluster.RegisterAPIService(ctx, gv.Group, gv.Version, g.Port, g.CABundle); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.WaitAPIsServed(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
}

// requestsHPA: web's HPA on http_requests (10 per pod) scales 2 → 3
// under 30 requests/s, reading the engine; once the per-pod rates are
// steady, each equals the single-process gateway's rate of the same pod
// over the same window within 2%. The load stops when ctx ends.
func (so *scaleOut) requestsHPA(ctx context.Context, t *testing.T) {
	t.Helper()
	const rps = 30
	hpaReadsMetric(ctx, t, soWeb, 2*time.Minute)
	before := so.usage()
	want := int32(hpaConverge(2, 2, 10, func(n int) float64 { return rps / float64(n) / 10 }))
	go func() { _, _ = e.Load(ctx, soWeb.ns, "app="+soWeb.name, rps) }()
	start := time.Now()
	eventually(t, 3*time.Minute, fmt.Sprintf("scale 2 → %d on http_requests through the engine", want), func() error { return replicas(ctx, soWeb, want) })
	t.Logf("scaled up to %d in %v", want, time.Since(start).Round(time.Second))

	var worst float64
	eventually(t, 3*time.Minute, "every pod's http_requests through the engine within 2% of the single-process gateway's", func() error {
		if err := replicas(ctx, soWeb, want); err != nil {
			t.Fatalf("after reaching %d: %v", want, err)
		}
		engine, err := so.podRates(ctx)
		if err != nil {
			return err
		}
		single, err := singleProcessRates(ctx, engine)
		if err != nil {
			return err
		}
		worst = 0
		for pod, v := range engine {
			share := float64(rps) / float64(want)
			if math.Abs(v.value-share)/share > 0.05 {
				return fmt.Errorf("%s: %.3f/s through the engine, not yet its share %.3f", pod, v.value, share)
			}
			d := math.Abs(v.value-single[pod]) / single[pod]
			if d > 0.02 {
				return fmt.Errorf("%s: %.4f/s through the engine, %.4f/s from the single-process gateway (%.1f%% apart)", pod, v.value, single[pod], 100*d)
			}
			worst = max(worst, d)
		}
		return nil
	})
	t.Logf("every pod's http_requests through the engine within %.2f%% of the single-process gateway's", 100*worst)
	so.logUsage(t, before, so.usage())
	// Scaling back to 2 happens while a receiver is down (receiverOutage).
}

// usage samples every process of the setup, and the single-process
// gateway, by name.
func (so *scaleOut) usage() map[string]usageSample {
	pids := map[string]int{"single-process gateway": e.Gateway.PID(), "thanos-query": so.thanos.QueryPID()}
	for i, g := range so.gateways {
		pids[fmt.Sprintf("scaleout-%d", i)] = g.PID()
	}
	for _, r := range so.thanos.Receivers {
		pids[r.Name] = r.PID()
	}
	out := map[string]usageSample{}
	for name, pid := range pids {
		if s, err := bench.ReadProc(pid); err == nil {
			out[name] = usageSample{ProcSample: s, at: time.Now()}
		}
	}
	return out
}

type usageSample struct {
	bench.ProcSample
	at time.Time
}

// logUsage logs each process's RSS and CPU per scrape round between two
// samples: what the capacity model in docs/scale-out.md starts from.
func (so *scaleOut) logUsage(t *testing.T, before, after map[string]usageSample) {
	t.Helper()
	var lines []string
	for name, a := range after {
		b, ok := before[name]
		if !ok || !a.at.After(b.at) {
			continue
		}
		rounds := float64(a.at.Sub(b.at)) / float64(e.Resolution)
		lines = append(lines, fmt.Sprintf("%s: RSS %d MB, %.3f CPU-s per %v round", name, a.RSS>>20, (a.CPU-b.CPU).Seconds()/rounds, e.Resolution))
	}
	slices.Sort(lines)
	t.Logf("usage over %v of steady load:\n%s", after["thanos-query"].at.Sub(before["thanos-query"].at).Round(time.Second), strings.Join(lines, "\n"))
}

type podRate struct {
	value  float64
	window time.Duration
}

// podRates reads web's http_requests from replica 0's custom metrics API
// (evaluated by the engine).
func (so *scaleOut) podRates(ctx context.Context) (map[string]podRate, error) {
	path := customV1beta2 + "/namespaces/" + soWeb.ns + "/pods/*/http_requests?labelSelector=" + url.QueryEscape("app="+soWeb.name)
	code, body, err := so.gateways[0].Get(ctx, path)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("%s: %d %s", path, code, body)
	}
	var list struct {
		Items []metricValue `json:"items"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nil, err
	}
	out := map[string]podRate{}
	for _, v := range list.Items {
		out[v.DescribedObject.Name] = podRate{value: v.float(), window: v.window()}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no values", path)
	}
	return out, nil
}

// singleProcessRates is the single-process gateway's rate of each pod's
// http_requests_total over the window the engine's values were read with.
func singleProcessRates(ctx context.Context, engine map[string]podRate) (map[string]float64, error) {
	out := map[string]float64{}
	for pod, v := range engine {
		window := v.window
		if window <= 0 {
			window = time.Minute
		}
		r, err := promScalar(ctx, fmt.Sprintf(`sum(rate(http_requests_total{namespace=%q, pod=%q}[%ds]))`, soWeb.ns, pod, int(window.Seconds())))
		if err != nil {
			return nil, err
		}
		if r <= 0 {
			return nil, fmt.Errorf("%s: single-process rate %v", pod, r)
		}
		out[pod] = r
	}
	return out, nil
}

// receiverOutage kills receiver 1 for two minutes. Meanwhile the HPAs
// scale through the querier, which answers from receiver 0: the workers
// 1 → 5 on a queue of 22 and back to 1 when it empties, and web 3 → 2 once
// stopLoad ends its load. Once receiver 1 is back, the gateways' queues
// replay what it missed from their WALs: its copy of the spread pods' up
// series has a sample in every 30 s from a minute before the kill to after
// the restart.
func (so *scaleOut) receiverOutage(ctx context.Context, t *testing.T, stopLoad func()) {
	t.Helper()
	hpaReadsMetric(ctx, t, soWorker, 2*time.Minute)
	r := so.thanos.Receivers[1]
	killed := time.Now()
	if err := r.Kill(); err != nil {
		t.Fatal(err)
	}
	since := func() time.Duration { return time.Since(killed).Round(time.Second) }
	t.Logf("%s killed", r.Name)
	stopLoad()
	const depth = 22
	want := int32(hpaConverge(1, 1, 10, func(n int) float64 { return depth / float64(perWorker*n) }))
	setQueueDepthOf(ctx, t, soQueue, depth)
	eventually(t, 100*time.Second, fmt.Sprintf("workers 1 → %d while %s is down", want, r.Name), func() error { return replicas(ctx, soWorker, want) })
	t.Logf("workers scaled 1 → %d %v after the kill", want, since())
	setQueueDepthOf(ctx, t, soQueue, 0)
	eventually(t, 3*time.Minute, "web back to 2 and the workers back to 1", func() error {
		if err := replicas(ctx, soWeb, 2); err != nil {
			return err
		}
		return replicas(ctx, soWorker, 1)
	})
	t.Logf("web scaled 3 → 2 and the workers 5 → 1 by %v after the kill", since())
	time.Sleep(time.Until(killed.Add(2 * time.Minute)))
	if err := r.Start(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	t.Logf("%s restarted after %v", r.Name, restarted.Sub(killed).Round(time.Second))

	expr := fmt.Sprintf(`count(count_over_time(up{job="kubernetes-pods", namespace=%q, pod=~"spread-.*", %s="r1"}[30s]))`, soSpread.ns, env.ReceiveReplicaLabel)
	from, to := killed.Add(-time.Minute), restarted.Add(30*time.Second)
	time.Sleep(time.Until(to))
	eventually(t, 2*time.Minute, "receiver r1 holds the spread pods' up with no gap over the outage", func() error {
		return so.noGap(ctx, expr, from, to, int(soSpread.replicas))
	})
	t.Logf("no gap in %s's copy from %s to %s: every 15s step has all %d spread pods' up within 30s", r.Name, from.Format(time.TimeOnly), to.Format(time.TimeOnly), soSpread.replicas)
}

// noGap checks that expr, evaluated without deduplication every 15s from
// from to to, is want at every step.
func (so *scaleOut) noGap(ctx context.Context, expr string, from, to time.Time, want int) error {
	q := url.Values{"query": {expr}, "dedup": {"false"}, "start": {strconv.FormatInt(from.Unix(), 10)}, "end": {strconv.FormatInt(to.Unix(), 10)}, "step": {"15"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, so.thanos.QueryURL+"/api/v1/query_range?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Values [][2]any `json:"values"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Status != "success" {
		return fmt.Errorf("%s: %s %v %s", expr, resp.Status, err, body.Error)
	}
	if len(body.Data.Result) != 1 {
		return fmt.Errorf("%s: %d series", expr, len(body.Data.Result))
	}
	steps := int(to.Sub(from)/(15*time.Second)) + 1
	vals := body.Data.Result[0].Values
	var short []string
	for _, v := range vals {
		if s, _ := v[1].(string); s != strconv.Itoa(want) {
			ts, _ := v[0].(float64)
			short = append(short, fmt.Sprintf("%s=%s", time.Unix(int64(ts), 0).Format(time.TimeOnly), s))
		}
	}
	if len(vals) < steps || len(short) > 0 {
		return fmt.Errorf("%d of %d steps answered, short ones: %v", len(vals), steps, short)
	}
	return nil
}

// replicaKilled SIGKILLs replica 1 for 30 s: replica 0's shard keeps
// reaching the engine the whole time, replica 1's stops, and returns once
// it is restarted.
func (so *scaleOut) replicaKilled(ctx context.Context, t *testing.T) {
	t.Helper()
	g := so.gateways[1]
	newest := func() (map[string]time.Time, error) {
		// Without deduplication, which drops the gateway_replica label.
		res, err := so.engineQuery(ctx, `max by (gateway_replica) (timestamp(up{job="kubernetes-pods"}))`, false)
		if err != nil {
			return nil, err
		}
		out := map[string]time.Time{}
		for _, s := range res {
			out[s.Metric["gateway_replica"]] = time.Unix(int64(s.Float()), 0)
		}
		return out, nil
	}
	// Fresh: scraped within two intervals, plus remote write's 5s batching.
	fresh := 2*e.Resolution + 10*time.Second
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	var last map[string]time.Time
	for time.Since(killed) < 30*time.Second {
		time.Sleep(5 * time.Second)
		n, err := newest()
		if err != nil {
			t.Fatal(err)
		}
		if age := time.Since(n["metrics-gateway-0"]); age > fresh {
			t.Errorf("%v after replica 1 was killed, replica 0's newest up is %v old", time.Since(killed).Round(time.Second), age.Round(time.Second))
		}
		last = n
	}
	if stopped := last["metrics-gateway-1"]; stopped.After(killed.Add(time.Second)) {
		t.Errorf("replica 1's up series advanced to %s after it was killed at %s", stopped.Format(time.TimeOnly), killed.Format(time.TimeOnly))
	}
	if err := g.StartReady(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	eventually(t, 2*time.Minute, "replica 1's shard back in the engine", func() error {
		n, err := newest()
		if err != nil {
			return err
		}
		if !n["metrics-gateway-1"].After(restarted) {
			return fmt.Errorf("replica 1's newest up is from %s, restarted at %s", n["metrics-gateway-1"].Format(time.TimeOnly), restarted.Format(time.TimeOnly))
		}
		return nil
	})
	t.Logf("replica 1's shard back in the engine %v after its restart; replica 0's stayed within %v throughout", time.Since(restarted).Round(time.Second), fresh)
}

// engineUnreachable stops the querier: replica 0 answers custom and
// external requests with a 503 naming it, well within the query timeout,
// metrics.k8s.io keeps answering, /readyz names the failing check (and
// passes without it, as the overlay's probe asks); all come back when the
// querier does.
func (so *scaleOut) engineUnreachable(ctx context.Context, t *testing.T) {
	t.Helper()
	g := so.gateways[0]
	if err := so.thanos.StopQuery(); err != nil {
		t.Fatal(err)
	}
	paths := []string{
		customV1beta2 + "/namespaces/" + soWeb.ns + "/pods/*/http_requests?labelSelector=" + url.QueryEscape("app="+soWeb.name),
		externalV1beta1 + "/namespaces/" + soQueue.ns + "/queue_depth",
	}
	var took []string
	for _, p := range paths {
		start := time.Now()
		code, body, err := g.Get(ctx, p)
		d := time.Since(start)
		if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, so.thanos.QueryURL) || !strings.Contains(body, `"kind":"Status"`) {
			t.Errorf("%s with the engine down: %d %v %s; want a 503 Status naming %s", p, code, err, body, so.thanos.QueryURL)
		}
		// The query timeout is 30s: a request that waited for it did not fail fast.
		if d > 10*time.Second {
			t.Errorf("%s took %v to fail", p, d)
		}
		took = append(took, d.Round(time.Millisecond).String())
	}
	t.Logf("custom and external requests with the engine down: 503 in %v", took)
	out, err := e.Kubectl(ctx, "top", "pods", "-n", soWeb.ns, "--no-headers")
	if err != nil || strings.TrimSpace(out) == "" {
		t.Errorf("kubectl top with the engine down: %v %s", err, out)
	}
	eventually(t, 30*time.Second, "/readyz names the query backend", func() error {
		code, body, err := g.Get(ctx, "/readyz?verbose")
		if err != nil {
			return err
		}
		if code == http.StatusOK || !strings.Contains(body, "[-]query-backend failed") {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		return nil
	})
	if code, body, err := g.Get(ctx, "/readyz?exclude=query-backend"); err != nil || code != http.StatusOK {
		t.Errorf("/readyz?exclude=query-backend with the engine down: %d %v %s", code, err, body)
	}
	if err := so.thanos.StartQuery(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "custom metrics answer again", func() error {
		code, body, err := g.Get(ctx, paths[0])
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%d %v %s", code, err, body)
		}
		code, body, err = g.Get(ctx, "/readyz")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("/readyz %d %v %s", code, err, body)
		}
		return nil
	})
}
