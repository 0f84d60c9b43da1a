package resource

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql/parser"
	promstorage "github.com/prometheus/prometheus/storage"
	corev1 "k8s.io/api/core/v1"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	klabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/metrics-gateway/metrics-gateway/pkg/pods"
	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

// countingQuerier counts evaluations, to hold the one-per-request promise.
type countingQuerier struct {
	storage.Querier
	n atomic.Int64
}

func (c *countingQuerier) Instant(ctx context.Context, expr string, ts time.Time, o storage.QueryOptions) (parser.Value, error) {
	c.n.Add(1)
	return c.Querier.Instant(ctx, expr, ts, o)
}

func openStore(tb testing.TB) *storage.Storage {
	tb.Helper()
	s, err := storage.Open(storage.Options{Path: tb.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// sample is one kubelet sample to append.
type sample struct {
	lbls []string // name/value pairs, without job
	t    int64
	v    float64
}

func appendSamples(tb testing.TB, s *storage.Storage, samples []sample) {
	tb.Helper()
	app := s.Appendable().AppenderV2(context.Background())
	for _, x := range samples {
		ls := labels.FromStrings(append([]string{"job", scrape.KubeletJobName}, x.lbls...)...)
		if _, err := app.Append(0, ls, 0, x.t, x.v, nil, nil, promstorage.AOptions{}); err != nil {
			tb.Fatalf("append %v: %v", ls, err)
		}
	}
	if err := app.Commit(); err != nil {
		tb.Fatal(err)
	}
}

func containerSamples(node, ns, pod, ctr string, t int64, cpu, mem, start float64) []sample {
	l := func(name string) []string {
		return []string{"__name__", name, "namespace", ns, "pod", pod, "container", ctr, "node", node, "instance", node}
	}
	return []sample{
		{l(scrape.ContainerCPUMetric), t, cpu},
		{l(scrape.ContainerMemoryMetric), t, mem},
		{l(scrape.ContainerStartTimeMetric), t, start},
	}
}

func nodeSamples(node string, t int64, cpu, mem float64) []sample {
	return []sample{
		{[]string{"__name__", scrape.NodeCPUMetric, "node", node, "instance", node}, t, cpu},
		{[]string{"__name__", scrape.NodeMemoryMetric, "node", node, "instance", node}, t, mem},
	}
}

func pod(ns, name string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}}}
}

func TestGetterReadsStorage(t *testing.T) {
	s := openStore(t)
	t0 := time.UnixMilli(1_790_000_000_000)
	ms := t0.UnixMilli()
	var in []sample
	for i, round := range []float64{0, 1} {
		ts := ms + int64(i)*15000
		in = append(in, containerSamples("n1", "a", "p1", "c1", ts, 10+0.75*round, 100, 1_789_000_000)...)
		in = append(in, containerSamples("n1", "a", "p1", "c2", ts, 2+0.15*round, 200, 1_789_000_000)...)
		in = append(in, containerSamples("n1", "b", "p1", "c1", ts, 5+0.3*round, 300, 1_789_000_000)...)
		in = append(in, nodeSamples("n1", ts, 1000+3*round, 4000)...)
	}
	// Same names in another job never mix in.
	other := containerSamples("n1", "a", "p1", "c1", ms+15000, 99999, 1, 1)
	appendSamples(t, s, in)
	app := s.Appendable().AppenderV2(context.Background())
	for _, x := range other {
		ls := labels.FromStrings(append([]string{"job", "pods"}, x.lbls...)...)
		_, _ = app.Append(0, ls, 0, x.t, x.v, nil, nil, promstorage.AOptions{})
	}
	_ = app.Commit()

	q := &countingQuerier{Querier: s}
	g := NewGetter(GetterOptions{Querier: q, Resolution: 15 * time.Second, Timeout: 10 * time.Second, Clock: fixedClock{t0.Add(20 * time.Second)}})
	got, err := g.GetPodMetrics(pod("b", "p1"), pod("a", "p1"), pod("a", "missing"))
	if err != nil {
		t.Fatal(err)
	}
	if q.n.Load() != 1 {
		t.Errorf("%d evaluations, want 1", q.n.Load())
	}
	if len(got) != 2 || got[0].Namespace != "b" || got[1].Namespace != "a" {
		t.Fatalf("got %+v", got)
	}
	if c := got[1].Containers; len(c) != 2 || c[0].Name != "c1" || c[0].Usage.Cpu().ScaledValue(-9) != 50_000_000 || c[1].Usage.Memory().Value() != 200 {
		t.Errorf("a/p1 containers %+v", c)
	}
	if got[1].Labels["app"] != "p1" || !got[1].Timestamp.Time.Equal(t0.Add(15*time.Second)) || got[1].Window.Duration != 15*time.Second {
		t.Errorf("a/p1 meta %+v", got[1])
	}
	nodes, err := g.GetNodeMetrics(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n2"}})
	if err != nil || len(nodes) != 1 || nodes[0].Usage.Cpu().ScaledValue(-9) != 200_000_000 {
		t.Fatalf("nodes %v %+v", err, nodes)
	}

	// A stale marker (the kubelet stopped reporting c2) hides the container,
	// and with it the pod.
	stale := containerSamples("n1", "a", "p1", "c2", ms+16000, 0, 0, 0)
	for i := range stale {
		stale[i].v = math.Float64frombits(value.StaleNaN)
	}
	appendSamples(t, s, stale[:1])
	// Only c2's cpu went stale: c2 has memory but no cpu, so the pod
	// is incomplete and left out, as metrics-server does.
	if got, err := g.GetPodMetrics(pod("a", "p1")); err != nil || len(got) != 0 {
		t.Errorf("after stale c2 cpu: %v %+v", err, got)
	}
	// The kubelet stopped reporting c2 altogether: the pod is c1 alone.
	appendSamples(t, s, stale[1:])
	got, err = g.GetPodMetrics(pod("a", "p1"))
	if err != nil || len(got) != 1 || len(got[0].Containers) != 1 || got[0].Containers[0].Name != "c1" {
		t.Errorf("after stale c2: %v %+v", err, got)
	}
	// Outside the window nothing is answered.
	old := NewGetter(GetterOptions{Querier: s, Resolution: 15 * time.Second, Timeout: 10 * time.Second, Clock: fixedClock{t0.Add(10 * time.Minute)}})
	if got, _ := old.GetPodMetrics(pod("a", "p1")); len(got) != 0 {
		t.Errorf("old data answered: %+v", got)
	}
	if got, err := g.GetPodMetrics(); err != nil || len(got) != 0 {
		t.Errorf("no pods: %v %v", got, err)
	}
}

// populate writes nodes×podsPerNode pods (one container each, pod i of node
// n in namespace ns-<i%10>) with history scrapes every 15s, ending at end.
func populate(tb testing.TB, s *storage.Storage, nodes, podsPerNode int, history time.Duration, end time.Time) []*metav1.PartialObjectMetadata {
	var pods []*metav1.PartialObjectMetadata
	rounds := int(history / (15 * time.Second))
	for n := 0; n < nodes; n++ {
		node := fmt.Sprintf("node-%03d", n)
		var in []sample
		for r := 0; r <= rounds; r++ {
			ts := end.Add(-time.Duration(rounds-r) * 15 * time.Second).UnixMilli()
			in = append(in, nodeSamples(node, ts, float64(r)*3, 4e9)...)
			for p := 0; p < podsPerNode; p++ {
				ns := fmt.Sprintf("ns-%d", p%10)
				name := fmt.Sprintf("pod-%03d-%03d", n, p)
				in = append(in, containerSamples(node, ns, name, "app", ts, float64(r)*0.75, 1e8, float64(end.Unix()-86400))...)
			}
		}
		appendSamples(tb, s, in)
		for p := 0; p < podsPerNode; p++ {
			pods = append(pods, &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
				Namespace: fmt.Sprintf("ns-%d", p%10), Name: fmt.Sprintf("pod-%03d-%03d", n, p),
				Labels: map[string]string{"app": fmt.Sprintf("app-%d", p%7)},
			}})
		}
	}
	return pods
}

// BenchmarkGetPodMetrics lists PodMetrics from a TSDB holding 100 nodes ×
// 70 pods with one hour of 15s history: all 7,000 pods (kubectl top pods
// -A), the 700 pods of one namespace, and one pod. The tails answer;
// BenchmarkGetPodMetricsPromQL is the same by PromQL alone, as the Getter
// answered before it had tails (benchstat compares this one with theirs).
func BenchmarkGetPodMetrics(b *testing.B) { benchmarkGetPodMetrics(b, true) }

// BenchmarkGetPodMetricsPromQL is BenchmarkGetPodMetrics without tails.
func BenchmarkGetPodMetricsPromQL(b *testing.B) { benchmarkGetPodMetrics(b, false) }

func benchmarkGetPodMetrics(b *testing.B, withTails bool) {
	s := openStore(b)
	end := time.Now().Truncate(time.Second)
	clock := fixedClock{end.Add(time.Second)}
	var tails Tails
	if withTails {
		var err error
		if tails, err = NewTails(s, clock.Now); err != nil {
			b.Fatal(err)
		}
	}
	pods := populate(b, s, 100, 70, time.Hour, end)
	var ns3 []*metav1.PartialObjectMetadata
	for _, p := range pods {
		if p.Namespace == "ns-3" {
			ns3 = append(ns3, p)
		}
	}
	q := &countingQuerier{Querier: s}
	g := NewGetter(GetterOptions{Querier: q, Tails: tails, Resolution: 15 * time.Second, Timeout: time.Minute, Clock: clock})
	for _, bc := range []struct {
		name string
		pods []*metav1.PartialObjectMetadata
	}{{"all-7000", pods}, {"namespace-700", ns3}, {"one", pods[4321:4322]}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				got, err := g.GetPodMetrics(bc.pods...)
				if err != nil || len(got) != len(bc.pods) {
					b.Fatalf("got %d of %d: %v", len(got), len(bc.pods), err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
			if withTails && q.n.Load() != 0 {
				b.Fatalf("the tails' getter evaluated PromQL %d times", q.n.Load())
			}
		})
	}
}

// BenchmarkListPodMetrics lists through the metrics.k8s.io storage over
// the tails of BenchmarkGetPodMetrics: every pod (kubectl top pods -A:
// the pod lister, a map's order, the getter and the answer's order by
// namespace and name), and the 100 pods of one app in a namespace of 700
// (what the HPA controller asks for: the pods' label index first). The
// apiserver's encoding follows either.
func BenchmarkListPodMetrics(b *testing.B) {
	s := openStore(b)
	end := time.Now().Truncate(time.Second)
	clock := fixedClock{end.Add(time.Second)}
	tails, err := NewTails(s, clock.Now)
	if err != nil {
		b.Fatal(err)
	}
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, pods.Indexers())
	for _, p := range populate(b, s, 100, 70, time.Hour, end) {
		if err := indexer.Add(p); err != nil {
			b.Fatal(err)
		}
	}
	g := NewGetter(GetterOptions{Querier: s, Tails: tails, Resolution: 15 * time.Second, Timeout: time.Minute, Clock: clock})
	ps := &podStorage{groupResource: metrics.Resource("podmetrics"), o: InstallOptions{
		Getter: g, Pods: pods.NewLister(indexer), Now: clock.Now,
	}}
	for _, bc := range []struct {
		name      string
		namespace string
		selector  klabels.Selector
		want      int
	}{
		{"all-7000", "", nil, 7000},
		{"namespace-selector-100", "ns-3", klabels.SelectorFromSet(klabels.Set{"app": "app-0"}), 100},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var opts *metainternalversion.ListOptions
			if bc.selector != nil {
				opts = &metainternalversion.ListOptions{LabelSelector: bc.selector}
			}
			b.ReportAllocs()
			cpu := cpuTime()
			for b.Loop() {
				obj, err := ps.List(inNamespace(bc.namespace), opts)
				if err != nil || len(obj.(*metrics.PodMetricsList).Items) != bc.want {
					b.Fatalf("got %v: %v", obj, err)
				}
			}
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user+system time: on a shared 2-core machine it
// varies less with other load than wall time does, and it counts GC work.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGetNodeMetrics lists 100 nodes with one hour of history from
// the tails; BenchmarkGetNodeMetricsPromQL by PromQL alone.
func BenchmarkGetNodeMetrics(b *testing.B) { benchmarkGetNodeMetrics(b, true) }

// BenchmarkGetNodeMetricsPromQL is BenchmarkGetNodeMetrics without tails.
func BenchmarkGetNodeMetricsPromQL(b *testing.B) { benchmarkGetNodeMetrics(b, false) }

func benchmarkGetNodeMetrics(b *testing.B, withTails bool) {
	s := openStore(b)
	end := time.Now().Truncate(time.Second)
	clock := fixedClock{end.Add(time.Second)}
	var tails Tails
	if withTails {
		var err error
		if tails, err = NewTails(s, clock.Now); err != nil {
			b.Fatal(err)
		}
	}
	populate(b, s, 100, 0, time.Hour, end)
	g := NewGetter(GetterOptions{Querier: s, Tails: tails, Resolution: 15 * time.Second, Timeout: time.Minute, Clock: clock})
	nodes := make([]*corev1.Node, 100)
	for i := range nodes {
		nodes[i] = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("node-%03d", i)}}
	}
	b.ReportAllocs()
	for b.Loop() {
		if got, err := g.GetNodeMetrics(nodes...); err != nil || len(got) != 100 {
			b.Fatalf("got %d: %v", len(got), err)
		}
	}
}
