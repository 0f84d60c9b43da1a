package custom

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	plabels "github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/metrics-gateway/metrics-gateway/pkg/rules"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// benchStep is the pod scrape interval the benchmark stores samples at.
const benchStep = 15 * time.Second

// benchSeries is one stored series: a gauge at value, or a counter growing
// at value per second.
type benchSeries struct {
	lbls    plabels.Labels
	value   float64
	counter bool
}

func openBenchStore(b *testing.B) *storage.Storage {
	b.Helper()
	s, err := storage.Open(storage.Options{Path: b.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	return s
}

// fillStore appends every series once per benchStep over history, ending
// at end, one commit per round as a scrape would.
func fillStore(b *testing.B, s *storage.Storage, series []benchSeries, history time.Duration, end time.Time) {
	b.Helper()
	refs := make([]promstorage.SeriesRef, len(series))
	rounds := int(history / benchStep)
	for r := 0; r <= rounds; r++ {
		ts := end.Add(-time.Duration(rounds-r) * benchStep)
		app := s.Appendable().AppenderV2(context.Background())
		for i, x := range series {
			v := x.value
			if x.counter {
				v *= float64(r) * benchStep.Seconds()
			}
			ref, err := app.Append(refs[i], x.lbls, 0, ts.UnixMilli(), v, nil, nil, promstorage.AOptions{})
			if err != nil {
				b.Fatalf("append %v: %v", x.lbls, err)
			}
			refs[i] = ref
		}
		if err := app.Commit(); err != nil {
			b.Fatal(err)
		}
	}
}

// podSeries labels a series as the pod job stores it.
func podSeries(name, ns, pod string, value float64, counter bool, extra ...string) benchSeries {
	lbls := append([]string{"__name__", name, "job", "kubernetes-pods", "instance", pod + ":8080", "namespace", ns, "pod", pod}, extra...)
	return benchSeries{lbls: plabels.FromStrings(lbls...), value: value, counter: counter}
}

func benchProvider(b *testing.B, s *storage.Storage, lister ObjectLister, clock *fakeClock, ttl time.Duration) *Provider {
	b.Helper()
	rs, err := rules.Compile(rules.DefaultConfig(rules.DefaultWindow), fakeMapper{})
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewProvider(Options{Storage: s, Rules: rs, Lister: lister, Mapper: fakeMapper{}, Now: clock.Now, CacheTTL: ttl})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// lastCatalog is the discovery list the provider serves now.
func lastCatalog(p *Provider) *catalog { return p.disc.last.Load().c }

// checkRebuilt fails a benchmark that did not measure what it says: with
// rebuild, the last iteration must have read the index (a failed rebuild
// serves the previous list); without, the list of the warm-up call must
// still be served.
func checkRebuilt(b *testing.B, p *Provider, clock *fakeClock, warm *catalog, rebuild bool) {
	b.Helper()
	snap := p.disc.last.Load()
	if rebuild && (snap.c == warm || !snap.builtAt.Equal(clock.Now())) {
		b.Fatalf("catalog built at %v, clock at %v: not rebuilt", snap.builtAt, clock.Now())
	}
	if !rebuild && snap.c != warm {
		b.Fatalf("catalog rebuilt at %v", snap.builtAt)
	}
}

// BenchmarkGetMetricBySelector answers one HPA-sized request: the 100 pods
// of one namespace, from a TSDB holding one hour of 15s samples of 1,000
// pods in 10 namespaces, 6 series each (6,000 series, 1.45M samples). The
// provider runs the default rules. "fresh" finds the discovery list within
// CacheTTL; "stale" finds it expired before every request, as an HPA
// polling every 15s does: the request is answered from the stale list
// while one rebuild runs in the background (its CPU is in the numbers).
func BenchmarkGetMetricBySelector(b *testing.B) {
	const namespaces, podsPerNS = 10, 100
	s := openBenchStore(b)
	end := time.Now().Truncate(time.Second)
	var series []benchSeries
	web := map[string]labels.Set{}
	for n := range namespaces {
		ns := fmt.Sprintf("ns-%d", n)
		for i := range podsPerNS {
			pod := fmt.Sprintf("web-%d-%03d", n, i)
			series = append(series,
				podSeries("http_requests_total", ns, pod, float64(1+i%5), true, "method", "GET"),
				podSeries("http_requests_total", ns, pod, 0.5, true, "method", "POST"),
				podSeries("queue_depth", ns, pod, float64(i%10), false),
				podSeries("process_cpu_seconds_total", ns, pod, 0.01, true),
				podSeries("go_goroutines", ns, pod, 50, false),
				podSeries("process_resident_memory_bytes", ns, pod, 64<<20, false),
			)
			if n == 3 {
				web[pod] = labels.Set{"app": "web"}
			}
		}
	}
	fillStore(b, s, series, time.Hour, end)
	lister := &fakeLister{objects: map[schema.GroupResource]map[string]map[string]labels.Set{podsGR: {"ns-3": web}}}
	sel := labels.SelectorFromSet(labels.Set{"app": "web"})

	for _, bc := range []struct {
		name, metric string
		rebuild      bool
		want         func(i int) float64
	}{
		{"rate/fresh", "http_requests", false, func(i int) float64 { return float64(1+i%5) + 0.5 }},
		{"rate/stale", "http_requests", true, func(i int) float64 { return float64(1+i%5) + 0.5 }},
		{"gauge/fresh", "queue_depth", false, func(i int) float64 { return float64(i % 10) }},
		{"gauge/stale", "queue_depth", true, func(i int) float64 { return float64(i % 10) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			clock := &fakeClock{t: end.Add(time.Second)}
			ttl := time.Duration(0) // the default, 1s
			if bc.rebuild {
				ttl = time.Millisecond
			}
			p := benchProvider(b, s, lister, clock, ttl)
			info := provider.CustomMetricInfo{GroupResource: podsGR, Namespaced: true, Metric: bc.metric}
			ctx := context.Background()
			list, err := p.GetMetricBySelector(ctx, "ns-3", sel, info, labels.Everything())
			if err != nil {
				b.Fatal(err)
			}
			if len(list.Items) != podsPerNS {
				b.Fatalf("got %d items, want %d", len(list.Items), podsPerNS)
			}
			for _, it := range list.Items {
				var i int
				if _, err := fmt.Sscanf(it.DescribedObject.Name, "web-3-%03d", &i); err != nil {
					b.Fatalf("unexpected object %s", it.DescribedObject.Name)
				}
				if got := it.Value.AsApproximateFloat64(); !within(got, bc.want(i)) {
					b.Fatalf("%s %s = %v, want %v", it.DescribedObject.Name, bc.metric, got, bc.want(i))
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if bc.rebuild {
					clock.Advance(time.Millisecond)
				}
				list, err := p.GetMetricBySelector(ctx, "ns-3", sel, info, labels.Everything())
				if err != nil || len(list.Items) != podsPerNS {
					b.Fatalf("got %d items: %v", len(list.Items), err)
				}
			}
		})
	}
}

// BenchmarkListAllMetrics lists the custom metrics of 10,000 series: 100
// metric names (a third each gauges, x_total and x_seconds_total counters)
// on 100 pods in 10 namespaces, one hour of 15s samples. Under the default
// rules that is 200 metrics (each name for pods and for namespaces).
// "rebuilt" expires the discovery list before every call, so each call
// reads the TSDB index; "cached" is a burst within CacheTTL.
func BenchmarkListAllMetrics(b *testing.B) {
	const names, pods, namespaces = 100, 100, 10
	s := openBenchStore(b)
	end := time.Now().Truncate(time.Second)
	series := make([]benchSeries, 0, names*pods)
	for m := range names {
		var name string
		switch m % 3 {
		case 0:
			name = fmt.Sprintf("app_gauge_%02d", m)
		case 1:
			name = fmt.Sprintf("app_events_%02d_total", m)
		default:
			name = fmt.Sprintf("app_busy_%02d_seconds_total", m)
		}
		for i := range pods {
			series = append(series, podSeries(name, fmt.Sprintf("ns-%d", i%namespaces), fmt.Sprintf("pod-%03d", i), 1, m%3 != 0))
		}
	}
	fillStore(b, s, series, time.Hour, end)
	if got := s.HeadSeries(); got != names*pods {
		b.Fatalf("head holds %d series, want %d", got, names*pods)
	}

	for _, bc := range []struct {
		name    string
		rebuild bool
	}{{"rebuilt", true}, {"cached", false}} {
		b.Run(bc.name, func(b *testing.B) {
			clock := &fakeClock{t: end.Add(time.Second)}
			ttl := time.Duration(0)
			if bc.rebuild {
				ttl = time.Millisecond
			}
			p := benchProvider(b, s, &fakeLister{}, clock, ttl)
			got := p.ListAllMetrics()
			if len(got) != 2*names {
				b.Fatalf("listed %d metrics, want %d", len(got), 2*names)
			}
			for _, want := range []provider.CustomMetricInfo{
				{GroupResource: podsGR, Namespaced: true, Metric: "app_gauge_00"},
				{GroupResource: podsGR, Namespaced: true, Metric: "app_events_01"},
				{GroupResource: namespacesGR, Metric: "app_busy_02"},
			} {
				if !hasMetric(got, want) {
					b.Fatalf("ListAllMetrics() misses %v", want)
				}
			}
			warm := lastCatalog(p)
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if bc.rebuild {
					clock.Advance(time.Millisecond)
				}
				if got := p.ListAllMetrics(); len(got) != 2*names {
					b.Fatalf("listed %d metrics, want %d", len(got), 2*names)
				}
			}
			checkRebuilt(b, p, clock, warm, bc.rebuild)
		})
	}
}
