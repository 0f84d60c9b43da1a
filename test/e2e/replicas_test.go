package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"github.com/metrics-gateway/metrics-gateway/test/env"
)

// hpaTolerance is the HPA controller's default tolerance: it leaves the
// replica count alone while the usage ratio is within 10% of 1.
const hpaTolerance = 0.10

// testReplicasAgree runs two more replicas beside the gateway, as the ha
// overlay does, each under the hostname its pod would have (the one
// manifests/base sets, or a pod name of its own when it sets none), and
// asks both the same question at the same instant twice a second while a
// pod's usage steps: its cpu (+0.4 cores) and then its request rate
// (0 → 40/s, the http_requests custom metric). Prometheus spreads each
// replica's scrapes by a hash of its hostname; with different ones, right
// after a step one replica may have seen it and the other not yet, for up
// to an interval. Both must stay within the HPA's tolerance of each other
// throughout, but for single answers; the worst case is logged. It also
// shows that a replica reports ready only when it can answer cpu for every
// node.
//
// Why single answers pass: the replicas scrape at the same instants, but
// each appends its scrape a few milliseconds after it (more on a loaded
// machine). A question that falls between the two appends, while a rate
// still climbs after a step, sees one more sample on one side: once, in
// CI, 11.1% apart 28.5 s after the request-rate step, in 1 of 130
// answers. That lasts until the other append, less than the 500 ms to the
// next question; replicas scraping at different instants (under their pod
// names) disagreed in 49 and 60 of 130 answers, in runs of seconds.
func testReplicasAgree(t *testing.T) {
	logsOnFailure(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root: each replica gets its pod's hostname in a UTS namespace of its own")
	}
	ctx := context.Background()
	d := deployment{ns: "e2e-replicas", name: "steps", replicas: 1, containers: []string{"app"}, cpuRequest: "100m",
		cpuBase: 0.05, cpuPerRequest: 0.001, memory: 32 << 20, scrape: true}
	d.create(ctx, t)
	t.Cleanup(func() { removeDeployments(t, d.ns) })
	pods, err := running(ctx, d.ns, "app="+d.name)
	if err != nil || len(pods) != 1 {
		t.Fatalf("%d running pods, %v", len(pods), err)
	}
	pod := pods[0].Name

	hostname, err := manifestHostname()
	if err != nil {
		t.Fatal(err)
	}
	var gateways [2]*env.Gateway
	for i := range gateways {
		name, host := fmt.Sprintf("replica-%d", i+1), hostname
		if host == "" {
			host = fmt.Sprintf("metrics-gateway-6f7d9c8b5-%c", 'a'+i) // as a Deployment names its pods
		}
		started := time.Now()
		r, err := e.Gateway.StartReplica(ctx, name, host)
		if err != nil {
			t.Fatal(err)
		}
		gateways[i] = r
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("%s's log:\n%s", name, r.LogTail(40))
			}
			if err := r.Stop(); err != nil {
				t.Errorf("stop %s: %v", name, err)
			}
		})
		// Ready means cpu for every node, at once.
		code, body, err := r.Get(ctx, "/apis/metrics.k8s.io/v1beta1/nodes")
		if n := strings.Count(body, `"cpu"`); err != nil || code != http.StatusOK || n != e.Nodes {
			t.Errorf("%s ready after %v, but its NodeMetrics list: %d %v, %d cpu values for %d nodes: %s", name, time.Since(started).Round(time.Second), code, err, n, e.Nodes, body)
		}
		t.Logf("%s (hostname %s) ready after %v, answering cpu for all %d nodes", name, host, time.Since(started).Round(time.Second), e.Nodes)
	}

	cpu := question{name: "cpu", path: "/apis/metrics.k8s.io/v1beta1/namespaces/" + d.ns + "/pods/" + pod, value: podCPU}
	rps := question{name: "http_requests", path: customV1beta2 + "/namespaces/" + d.ns + "/pods/" + pod + "/http_requests", value: customValue}
	for _, q := range []question{cpu, rps} {
		eventually(t, 2*e.Resolution+30*time.Second, "both replicas answer "+q.name, func() error {
			_, _, err := q.ask(ctx, gateways)
			return err
		})
	}
	settle := 2*e.Resolution + 5*time.Second
	cpu.measure(ctx, t, gateways, "steady", settle, nil)
	cpu.measure(ctx, t, gateways, "after +0.4 cores", settle+e.Resolution, func() {
		if err := e.SetExtraCPU(ctx, d.ns, pod, 0.4); err != nil {
			t.Fatal(err)
		}
	})
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	rps.measure(ctx, t, gateways, "after 0 → 40 requests/s", settle+e.Resolution, func() {
		go func() { _, _ = e.Load(loadCtx, d.ns, "app="+d.name, 40) }()
	})
}

// question is one value both replicas are asked for.
type question struct {
	name, path string
	value      func(body []byte) (float64, error)
}

// ask asks both gateways at the same instant.
func (q question) ask(ctx context.Context, gws [2]*env.Gateway) (a, b float64, err error) {
	type answer struct {
		v   float64
		err error
	}
	ch := [2]chan answer{make(chan answer, 1), make(chan answer, 1)}
	for i, g := range gws {
		go func() {
			code, body, err := g.Get(ctx, q.path)
			if err == nil && code != http.StatusOK {
				err = fmt.Errorf("%d %s", code, body)
			}
			var v float64
			if err == nil {
				v, err = q.value([]byte(body))
			}
			ch[i] <- answer{v, err}
		}()
	}
	x, y := <-ch[0], <-ch[1]
	if x.err != nil || y.err != nil {
		return 0, 0, fmt.Errorf("%s: gateway %v, replica %v", q.path, x.err, y.err)
	}
	return x.v, y.v, nil
}

// measure runs step (if any), then asks both replicas twice a second for
// settle plus a resolution. It logs the worst disagreement and fails if it
// reaches the HPA's tolerance in two answers in a row.
func (q question) measure(ctx context.Context, t *testing.T, gws [2]*env.Gateway, what string, settle time.Duration, step func()) {
	t.Helper()
	start := time.Now()
	if step != nil {
		step()
	}
	var worst, worstA, worstB float64
	var worstAt time.Duration
	asked, over, inARow := 0, 0, 0
	lastOver := false
	for time.Since(start) < settle+e.Resolution {
		at := time.Since(start)
		a, b, err := q.ask(ctx, gws)
		if err != nil {
			t.Fatalf("%s %s at %v: %v", q.name, what, at.Round(time.Millisecond), err)
		}
		asked++
		diff := relDiff(a, b)
		if diff > worst {
			worst, worstA, worstB, worstAt = diff, a, b, at
		}
		isOver := diff >= hpaTolerance
		if isOver {
			over++
			if lastOver {
				inARow++
			}
		}
		lastOver = isOver
		time.Sleep(500*time.Millisecond - time.Since(start.Add(at)))
	}
	t.Logf("%s %s: %d simultaneous answers; worst disagreement %.2f%% (%.4g vs %.4g, %v after the step); %d answers at or over the HPA's %.0f%% tolerance, %d of them right after another",
		q.name, what, asked, 100*worst, worstA, worstB, worstAt.Round(100*time.Millisecond), over, 100*hpaTolerance, inARow)
	if inARow > 0 {
		t.Errorf("%s %s: the replicas disagreed by %.0f%% or more in %d of %d answers, %d of them right after another, worst %.1f%% (%.4g vs %.4g) %v after the step",
			q.name, what, 100*hpaTolerance, over, asked, inARow, 100*worst, worstA, worstB, worstAt.Round(100*time.Millisecond))
	}
}

// manifestHostname is the hostname manifests/base gives the gateway's
// pods, empty when it gives none (each pod is then named after itself).
func manifestHostname() (string, error) {
	b, err := os.ReadFile(filepath.Join(e.Root(), "manifests", "base", "deployment.yaml"))
	if err != nil {
		return "", err
	}
	var d appsv1.Deployment
	if err := yaml.Unmarshal(b, &d); err != nil {
		return "", err
	}
	return d.Spec.Template.Spec.Hostname, nil
}

// relDiff is |a-b| relative to the larger of the two.
func relDiff(a, b float64) float64 {
	m := math.Max(math.Abs(a), math.Abs(b))
	if m == 0 {
		return 0
	}
	return math.Abs(a-b) / m
}

// podCPU is the total cpu of a PodMetrics, in cores.
func podCPU(body []byte) (float64, error) {
	var pm struct {
		Containers []struct {
			Usage map[string]resource.Quantity `json:"usage"`
		} `json:"containers"`
	}
	if err := json.Unmarshal(body, &pm); err != nil {
		return 0, err
	}
	if len(pm.Containers) == 0 {
		return 0, fmt.Errorf("no containers: %s", body)
	}
	var cores float64
	for _, c := range pm.Containers {
		q := c.Usage["cpu"]
		cores += q.AsApproximateFloat64()
	}
	return cores, nil
}

// customValue is the value of a single-object custom metric answer: a
// MetricValueList with one item.
func customValue(body []byte) (float64, error) {
	var l struct {
		Items []metricValue `json:"items"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		return 0, err
	}
	if len(l.Items) != 1 {
		return 0, fmt.Errorf("%d items, want 1: %s", len(l.Items), body)
	}
	return l.Items[0].float(), nil
}
