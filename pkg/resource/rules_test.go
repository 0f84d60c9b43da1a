package resource

import (
	"context"
	"errors"
	"math"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/metrics-gateway/metrics-gateway/pkg/rules"
	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// coreMapper knows the resources the adapter's resource rules name, the way
// a discovery-backed RESTMapper knows them.
func coreMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper([]schema.GroupVersion{{Version: "v1"}})
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Node"}, meta.RESTScopeRoot)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, meta.RESTScopeRoot)
	return m
}

// adapterDefaults compiles the adapter's published resourceRules.
func adapterDefaults(t *testing.T) *rules.Rules {
	t.Helper()
	data, err := os.ReadFile("../rules/testdata/adapter-default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := rules.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	r, err := rules.Compile(cfg, coreMapper())
	if err != nil {
		t.Fatal(err)
	}
	if r.CPU == nil || r.Memory == nil {
		t.Fatal("adapter defaults compiled without resource rules")
	}
	return r
}

// kubeletRound is one scrape of the kubelet's resource endpoint at ms:
// cumulative cpu seconds and working set bytes by container, a series left
// out where its value is NaN.
func kubeletRound(ms int64, ns, pod string, ctrs map[string][2]float64) []sample {
	var out []sample
	for ctr, v := range ctrs {
		l := func(name string) []string {
			return []string{"__name__", name, "namespace", ns, "pod", pod, "container", ctr, "node", "n1", "instance", "n1"}
		}
		if !math.IsNaN(v[0]) {
			out = append(out, sample{l(scrape.ContainerCPUMetric), ms, v[0]})
		}
		if !math.IsNaN(v[1]) {
			out = append(out, sample{l(scrape.ContainerMemoryMetric), ms, v[1]})
		}
	}
	return out
}

// adapterFixture fills a TSDB with three kubelet scrapes 15s apart, the
// last at t0+30s: complete pods, pods lacking a resource or with values
// that are not usages, and nodes. It returns the storage and t0+35s.
func adapterFixture(t *testing.T) (*storage.Storage, time.Time) {
	t.Helper()
	s := openStore(t)
	t0 := time.UnixMilli(1_790_000_000_000)
	nan := math.NaN()
	var in []sample
	for r := 0; r < 3; r++ {
		ms, x := t0.UnixMilli()+int64(r)*15000, float64(r)
		in = append(in, kubeletRound(ms, "a", "p1", map[string][2]float64{"c1": {10 + 0.75*x, 104857600}, "c2": {2 + 0.15*x, 200}})...)
		in = append(in, kubeletRound(ms, "a", "no-memory", map[string][2]float64{"c1": {1 + x, nan}})...)
		in = append(in, kubeletRound(ms, "a", "one-without-cpu", map[string][2]float64{"c1": {1 + x, 1}, "c2": {nan, 1}})...)
		in = append(in, kubeletRound(ms, "a", "nan-memory", map[string][2]float64{"c1": {1 + x, nan}})...)
		in = append(in, kubeletRound(ms, "a", "negative-memory", map[string][2]float64{"c1": {1 + x, -5}})...)
		in = append(in, kubeletRound(ms, "b", "p1", map[string][2]float64{"c1": {5 + 0.3*x, 300}})...)
		in = append(in, nodeSamples("n1", ms, 1000+3*x, 4000)...)
		in = append(in, sample{[]string{"__name__", scrape.NodeCPUMetric, "node", "cpu-only", "instance", "cpu-only"}, ms, x})
		in = append(in, sample{[]string{"__name__", scrape.ContainerMemoryMetric, "namespace", "a", "pod", "nan-memory", "container", "c1", "node", "n1"}, ms, nan})
	}
	appendSamples(t, s, in)
	return s, t0.Add(35 * time.Second)
}

func TestRulesGetterPods(t *testing.T) {
	s, now := adapterFixture(t)
	r := adapterDefaults(t)
	q := &countingQuerier{Querier: s}
	g := NewRulesGetter(q, r.CPU, r.Memory, r.Window, 10*time.Second, fixedClock{now})
	got, err := g.GetPodMetrics(pod("b", "p1"), pod("a", "p1"), pod("a", "no-memory"), pod("a", "one-without-cpu"),
		pod("a", "nan-memory"), pod("a", "negative-memory"), pod("a", "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if n := q.n.Load(); n != 4 {
		t.Errorf("%d evaluations, want one per resource and namespace: 4", n)
	}
	type ctr struct {
		name      string
		nanocores int64
		bytes     int64
	}
	want := []struct {
		ns, name string
		ctrs     []ctr
	}{
		{"b", "p1", []ctr{{"c1", 20_000_000, 300}}},
		{"a", "p1", []ctr{{"c1", 50_000_000, 104857600}, {"c2", 10_000_000, 200}}},
	}
	if len(got) != len(want) {
		var names []string
		for _, pm := range got {
			names = append(names, pm.Namespace+"/"+pm.Name)
		}
		t.Fatalf("got pods %v, want %d", names, len(want))
	}
	for i, w := range want {
		pm := got[i]
		if pm.Namespace != w.ns || pm.Name != w.name || pm.Labels["app"] != w.name {
			t.Errorf("pod %d is %s/%s %v, want %s/%s", i, pm.Namespace, pm.Name, pm.Labels, w.ns, w.name)
		}
		// The adapter reports the sample time, which for an instant query
		// is the evaluation time, and the configured window.
		if !pm.Timestamp.Time.Equal(now) || pm.Window.Duration != 5*time.Minute || pm.Window.Duration != r.Window {
			t.Errorf("%s/%s: timestamp %v window %v, want %v 5m", w.ns, w.name, pm.Timestamp, pm.Window, now)
		}
		if len(pm.Containers) != len(w.ctrs) {
			t.Fatalf("%s/%s containers %+v", w.ns, w.name, pm.Containers)
		}
		for j, c := range w.ctrs {
			gc := pm.Containers[j]
			cpu := gc.Usage.Cpu().ScaledValue(-9)
			if gc.Name != c.name || math.Abs(float64(cpu-c.nanocores)) > float64(c.nanocores)/100 {
				t.Errorf("%s/%s container %d: %s %dn, want %s %dn", w.ns, w.name, j, gc.Name, cpu, c.name, c.nanocores)
			}
			if b := gc.Usage.Memory().Value(); b != c.bytes {
				t.Errorf("%s/%s/%s memory %d, want %d", w.ns, w.name, c.name, b, c.bytes)
			}
		}
	}
	// Beyond irate's 4m range and the 5m lookback nothing is answered.
	late := NewRulesGetter(s, r.CPU, r.Memory, r.Window, 10*time.Second, fixedClock{now.Add(10 * time.Minute)})
	if got, err := late.GetPodMetrics(pod("a", "p1")); err != nil || len(got) != 0 {
		t.Errorf("old pod data answered: %v %+v", err, got)
	}
	if got, err := g.GetPodMetrics(); err != nil || got == nil || len(got) != 0 {
		t.Errorf("no pods: %v %v", got, err)
	}
}

func TestRulesGetterNodes(t *testing.T) {
	s, now := adapterFixture(t)
	r := adapterDefaults(t)
	q := &countingQuerier{Querier: s}
	g := NewRulesGetter(q, r.CPU, r.Memory, r.Window, 10*time.Second, fixedClock{now})
	nodes, err := g.GetNodeMetrics(node("n1"), node("cpu-only"), node("missing"))
	if err != nil {
		t.Fatal(err)
	}
	if n := q.n.Load(); n != 2 {
		t.Errorf("%d evaluations for nodes, want 2", n)
	}
	if len(nodes) != 1 || nodes[0].Name != "n1" || nodes[0].Labels["role"] != "n1" {
		t.Fatalf("nodes %+v", nodes)
	}
	if cpu := nodes[0].Usage.Cpu().ScaledValue(-9); math.Abs(float64(cpu-200_000_000)) > 2_000_000 {
		t.Errorf("node cpu %dn, want 200000000n", cpu)
	}
	if b := nodes[0].Usage.Memory().Value(); b != 4000 {
		t.Errorf("node memory %d, want 4000", b)
	}
	if !nodes[0].Timestamp.Time.Equal(now) || nodes[0].Window.Duration != r.Window {
		t.Errorf("node timestamp %v window %v", nodes[0].Timestamp, nodes[0].Window)
	}

	late := NewRulesGetter(s, r.CPU, r.Memory, r.Window, 10*time.Second, fixedClock{now.Add(10 * time.Minute)})
	if got, err := late.GetNodeMetrics(node("n1")); err != nil || len(got) != 0 {
		t.Errorf("old node data answered: %v %+v", err, got)
	}
	if got, err := g.GetNodeMetrics(); err != nil || got == nil || len(got) != 0 {
		t.Errorf("no nodes: %v %v", got, err)
	}
}

func node(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"role": name}}}
}

// funcQuerier answers Instant with a function.
type funcQuerier func(ctx context.Context, expr string) (parser.Value, error)

var _ storage.Querier = funcQuerier(nil)

func (f funcQuerier) Instant(ctx context.Context, expr string, _ time.Time, _ storage.QueryOptions) (parser.Value, error) {
	return f(ctx, expr)
}

func (f funcQuerier) Range(context.Context, string, time.Time, time.Time, time.Duration, storage.QueryOptions) (parser.Value, error) {
	return nil, errors.New("unexpected range query")
}

func TestRulesGetterErrors(t *testing.T) {
	def := adapterDefaults(t)
	s := openStore(t)
	query := func(t *testing.T, container, node string, overrides map[string]rules.GroupResource) *rules.ResourceQuery {
		t.Helper()
		if overrides == nil {
			overrides = map[string]rules.GroupResource{"namespace": {Resource: "namespace"}, "pod": {Resource: "pod"}, "node": {Resource: "node"}}
		}
		rq, err := rules.NewResourceQuery(rules.ResourceRule{
			ContainerQuery: container, NodeQuery: node, ContainerLabel: "container",
			Resources: rules.ResourceMapping{Overrides: overrides},
		}, coreMapper())
		if err != nil {
			t.Fatal(err)
		}
		return rq
	}
	ok := funcQuerier(func(context.Context, string) (parser.Value, error) { return promql.Vector{}, nil })
	for _, tc := range []struct {
		name string
		q    storage.Querier
		// cpu and mem replace the defaults when they return non-nil.
		cpu, mem func(t *testing.T) *rules.ResourceQuery
		timeout  time.Duration
		want     func(error) bool
	}{
		{name: "storage not ready",
			q:    funcQuerier(func(context.Context, string) (parser.Value, error) { return nil, storage.ErrNotReady }),
			want: func(err error) bool { return errors.Is(err, storage.ErrNotReady) }},
		{name: "rendered query does not parse", q: s,
			mem: func(t *testing.T) *rules.ResourceQuery {
				return query(t, `sum(x{<<.LabelMatchers>>}`, `sum(x{<<.LabelMatchers>>}`, nil)
			},
			want: func(err error) bool { var bq *storage.BadQueryError; return errors.As(err, &bq) }},
		{name: "query gives a matrix", q: s,
			cpu: func(t *testing.T) *rules.ResourceQuery {
				return query(t, `x{<<.LabelMatchers>>}[1m]`, `x{<<.LabelMatchers>>}[1m]`, nil)
			},
			want: func(err error) bool { return strings.Contains(err.Error(), "want vector") }},
		{name: "no label for pods or nodes", q: ok,
			cpu: func(t *testing.T) *rules.ResourceQuery {
				return query(t, `x{<<.LabelMatchers>>}`, `x{<<.LabelMatchers>>}`, map[string]rules.GroupResource{"namespace": {Resource: "namespace"}})
			},
			want: func(err error) bool { return strings.Contains(err.Error(), "no generic resource label form") }},
		{name: "timeout bounds the request",
			q: funcQuerier(func(ctx context.Context, _ string) (parser.Value, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}),
			timeout: 50 * time.Millisecond,
			want:    func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{name: "one of several evaluations fails",
			q: funcQuerier(func(_ context.Context, expr string) (parser.Value, error) {
				if strings.Contains(expr, `namespace="b"`) || strings.Contains(expr, "node_memory") {
					return nil, errors.New("boom")
				}
				return promql.Vector{}, nil
			}),
			want: func(err error) bool { return err != nil && strings.Contains(err.Error(), "boom") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cpu, mem := def.CPU, def.Memory
			if tc.cpu != nil {
				cpu = tc.cpu(t)
			}
			if tc.mem != nil {
				mem = tc.mem(t)
			}
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			g := NewRulesGetter(tc.q, cpu, mem, def.Window, timeout, fixedClock{time.UnixMilli(1_790_000_000_000)})
			start := time.Now()
			pods, err := g.GetPodMetrics(pod("a", "p1"), pod("b", "p1"))
			if err == nil || !tc.want(err) || pods != nil {
				t.Errorf("pods: %v %+v", err, pods)
			}
			nodes, err := g.GetNodeMetrics(node("n1"))
			if err == nil || !tc.want(err) || nodes != nil {
				t.Errorf("nodes: %v %+v", err, nodes)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestToReading(t *testing.T) {
	cpu := ruleResource{name: corev1.ResourceCPU, quantity: cpuQuantity}
	mem := ruleResource{name: corev1.ResourceMemory, quantity: memoryQuantity}
	for _, tc := range []struct {
		name string
		res  ruleResource
		s    promql.Sample
		ok   bool
		want int64 // nanocores or bytes
	}{
		{"cpu", cpu, promql.Sample{F: 0.05}, true, 50_000_000},
		{"idle cpu", cpu, promql.Sample{F: 0}, true, 0},
		{"cpu below a millicore", cpu, promql.Sample{F: 0.0000123}, true, 12_300},
		{"cpu NaN", cpu, promql.Sample{F: math.NaN()}, false, 0},
		{"cpu negative", cpu, promql.Sample{F: -0.1}, false, 0},
		{"cpu infinite", cpu, promql.Sample{F: math.Inf(1)}, false, 0},
		{"cpu beyond uint64 nanocores", cpu, promql.Sample{F: 2e10}, false, 0},
		{"memory", mem, promql.Sample{F: 104857600}, true, 104857600},
		{"memory fraction truncated", mem, promql.Sample{F: 1.9}, true, 1},
		{"memory negative", mem, promql.Sample{F: -1}, false, 0},
		{"memory NaN", mem, promql.Sample{F: math.NaN()}, false, 0},
		{"histogram", mem, promql.Sample{H: &histogram.FloatHistogram{}}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.s.Metric = labels.FromStrings("pod", "p")
			tc.s.T = 42
			r, ok := toReading(tc.s, tc.res)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			got := r.q.Value()
			if tc.res.name == corev1.ResourceCPU {
				got = r.q.ScaledValue(-9)
			}
			if got != tc.want || r.t != 42 {
				t.Errorf("got %d at %d, want %d at 42", got, r.t, tc.want)
			}
		})
	}
}

func TestForEach(t *testing.T) {
	var running, peak atomic.Int64
	boom := errors.New("boom")
	err := forEach(context.Background(), 50, func(ctx context.Context, i int) error {
		n := running.Add(1)
		defer running.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(time.Millisecond)
		if i == 7 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want boom", err)
	}
	if p := peak.Load(); p > rulesParallelism {
		t.Errorf("%d calls at once, want at most %d", p, rulesParallelism)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var calls atomic.Int64
	err = forEach(ctx, 1000, func(context.Context, int) error { calls.Add(1); return nil })
	if !errors.Is(err, context.Canceled) {
		t.Errorf("ended context: err = %v (%d calls)", err, calls.Load())
	}
	if err := forEach(context.Background(), 0, nil); err != nil {
		t.Errorf("no calls: %v", err)
	}
}
