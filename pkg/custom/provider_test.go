package custom

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	plabels "github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/metrics-gateway/metrics-gateway/pkg/rules"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

var (
	podsGR       = schema.GroupResource{Resource: "pods"}
	namespacesGR = schema.GroupResource{Resource: "namespaces"}
)

// counter is one http_requests_total series growing at rate per second.
type counter struct {
	pod, method string
	rate        float64
}

var counters = []counter{
	{"a", "GET", 1}, {"a", "POST", 0.5}, {"b", "GET", 2}, {"c", "GET", 3},
}

var gauges = map[string]float64{"a": 10, "b": 20}

const externalConfig = `
externalRules:
- seriesQuery: 'queue_depth{namespace!=""}'
  resources:
    overrides:
      namespace: {resource: namespace}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>})'
`

type fixture struct {
	store *storage.Storage
	clock *fakeClock
	p     *Provider
}

// newFixture stores three minutes of samples every 15s ending at the
// fixture's clock, and builds a provider over the default rules plus an
// external rule for queue_depth.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	s, err := storage.Open(storage.Options{Path: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	end := time.Now().Truncate(time.Second)
	start := end.Add(-3 * time.Minute)
	app := s.Appendable().AppenderV2(context.Background())
	for ts := start; !ts.After(end); ts = ts.Add(15 * time.Second) {
		secs := ts.Sub(start).Seconds()
		for _, c := range counters {
			appendOne(t, app, ts, c.rate*secs, "__name__", "http_requests_total", "namespace", "default", "pod", c.pod, "method", c.method)
		}
		for pod, v := range gauges {
			appendOne(t, app, ts, v, "__name__", "queue_depth", "namespace", "default", "pod", pod)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	cfg := rules.DefaultConfig(2 * time.Minute)
	ext, err := rules.Load([]byte(externalConfig))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ExternalRules = ext.ExternalRules
	rs, err := rules.Compile(cfg, fakeMapper{})
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: end}
	lister := &fakeLister{objects: map[schema.GroupResource]map[string]map[string]labels.Set{
		podsGR: {"default": {
			"a": {"app": "web"}, "b": {"app": "web"}, "c": {"app": "db"},
		}},
	}}
	p, err := NewProvider(Options{Storage: s, Rules: rs, Lister: lister, Mapper: fakeMapper{}, Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{store: s, clock: clock, p: p}
}

func appendOne(t *testing.T, app promstorage.AppenderV2, ts time.Time, v float64, lbls ...string) {
	t.Helper()
	if _, err := app.Append(0, plabels.FromStrings(lbls...), 0, ts.UnixMilli(), v, nil, nil, promstorage.AOptions{}); err != nil {
		t.Fatal(err)
	}
}

func hasMetric(list []provider.CustomMetricInfo, want provider.CustomMetricInfo) bool {
	for _, m := range list {
		if m == want {
			return true
		}
	}
	return false
}

func within(got, want float64) bool { return math.Abs(got-want) <= 0.01*want }

func TestListAllMetrics(t *testing.T) {
	f := newFixture(t)
	got := f.p.ListAllMetrics()
	for _, want := range []provider.CustomMetricInfo{
		{GroupResource: podsGR, Namespaced: true, Metric: "http_requests"},
		{GroupResource: namespacesGR, Namespaced: false, Metric: "http_requests"},
		{GroupResource: podsGR, Namespaced: true, Metric: "queue_depth"},
		{GroupResource: namespacesGR, Namespaced: false, Metric: "queue_depth"},
	} {
		if !hasMetric(got, want) {
			t.Errorf("ListAllMetrics() = %v, missing %v", got, want)
		}
	}
	if hasMetric(got, provider.CustomMetricInfo{GroupResource: podsGR, Namespaced: true, Metric: "http_requests_total"}) {
		t.Errorf("ListAllMetrics() lists the raw counter name: %v", got)
	}
	ext := f.p.ListAllExternalMetrics()
	if len(ext) != 1 || ext[0].Metric != "queue_depth" {
		t.Errorf("ListAllExternalMetrics() = %v, want [queue_depth]", ext)
	}
}

func TestListAllMetricsFollowsNewSeries(t *testing.T) {
	f := newFixture(t)
	want := provider.CustomMetricInfo{GroupResource: podsGR, Namespaced: true, Metric: "new_gauge"}
	if hasMetric(f.p.ListAllMetrics(), want) {
		t.Fatalf("new_gauge listed before it was stored")
	}
	app := f.store.Appendable().AppenderV2(context.Background())
	appendOne(t, app, f.clock.Now(), 1, "__name__", "new_gauge", "namespace", "default", "pod", "d")
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	if !hasMetric(f.p.ListAllMetrics(), want) {
		t.Errorf("new_gauge not listed 1s after it was stored")
	}
}

func TestGetMetricBySelector(t *testing.T) {
	f := newFixture(t)
	info := provider.CustomMetricInfo{GroupResource: podsGR, Namespaced: true, Metric: "http_requests"}
	for _, tc := range []struct {
		name      string
		selector  string
		metricSel string
		want      map[string]float64
	}{
		{"all web pods", "app=web", "", map[string]float64{"a": 1.5, "b": 2}},
		{"metric selector", "app=web", "method=GET", map[string]float64{"a": 1, "b": 2}},
		{"no objects", "app=none", "", map[string]float64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sel, msel := mustParse(t, tc.selector), mustParse(t, tc.metricSel)
			list, err := f.p.GetMetricBySelector(context.Background(), "default", sel, info, msel)
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != len(tc.want) {
				t.Fatalf("got %d items %v, want %v", len(list.Items), list.Items, tc.want)
			}
			for _, it := range list.Items {
				got := it.Value.AsApproximateFloat64()
				if want, ok := tc.want[it.DescribedObject.Name]; !ok || !within(got, want) {
					t.Errorf("%s = %v, want %v", it.DescribedObject.Name, got, tc.want)
				}
				if it.DescribedObject.Kind != "Pod" || it.DescribedObject.APIVersion != "v1" || it.DescribedObject.Namespace != "default" {
					t.Errorf("described object = %+v", it.DescribedObject)
				}
				if !it.Timestamp.Time.Equal(f.clock.Now()) {
					t.Errorf("timestamp = %v, want %v", it.Timestamp, f.clock.Now())
				}
			}
		})
	}
}

func TestGetMetricByName(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	v, err := f.p.GetMetricByName(ctx, types.NamespacedName{Namespace: "default", Name: "c"},
		provider.CustomMetricInfo{GroupResource: podsGR, Namespaced: true, Metric: "http_requests"}, labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Value.AsApproximateFloat64(); !within(got, 3) {
		t.Errorf("pod c http_requests = %v, want 3", got)
	}
	if v.WindowSeconds == nil || *v.WindowSeconds != 120 {
		t.Errorf("pod c http_requests window = %v, want 120s", v.WindowSeconds)
	}
	// A namespace metric sums its pods; the singular resource is normalized.
	v, err = f.p.GetMetricByName(ctx, types.NamespacedName{Name: "default"},
		provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "namespace"}, Metric: "http_requests"}, labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Value.AsApproximateFloat64(); !within(got, 6.5) || v.DescribedObject.Kind != "Namespace" {
		t.Errorf("namespace default http_requests = %v (%+v), want 6.5", got, v.DescribedObject)
	}
	v, err = f.p.GetMetricByName(ctx, types.NamespacedName{Namespace: "default", Name: "b"},
		provider.CustomMetricInfo{GroupResource: podsGR, Namespaced: true, Metric: "queue_depth"}, labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Value.MilliValue(); got != 20000 {
		t.Errorf("pod b queue_depth = %dm, want 20000m", got)
	}
	if v.WindowSeconds != nil {
		t.Errorf("gauge queue_depth has a window: %d", *v.WindowSeconds)
	}
}

func TestErrors(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	reqs := provider.CustomMetricInfo{GroupResource: podsGR, Namespaced: true, Metric: "http_requests"}
	for _, tc := range []struct {
		name  string
		call  func() error
		check func(error) bool
	}{
		{"unknown metric", func() error {
			_, err := f.p.GetMetricBySelector(ctx, "default", labels.Everything(),
				provider.CustomMetricInfo{GroupResource: podsGR, Namespaced: true, Metric: "nope"}, labels.Everything())
			return err
		}, apierrors.IsNotFound},
		{"object without value", func() error {
			_, err := f.p.GetMetricByName(ctx, types.NamespacedName{Namespace: "default", Name: "zzz"}, reqs, labels.Everything())
			return err
		}, apierrors.IsNotFound},
		{"unknown external metric", func() error {
			_, err := f.p.GetExternalMetric(ctx, "default", labels.Everything(), provider.ExternalMetricInfo{Metric: "nope"})
			return err
		}, apierrors.IsNotFound},
		{"unsupported selector operator", func() error {
			_, err := f.p.GetMetricBySelector(ctx, "default", labels.Everything(), reqs, mustParse(t, "code>400"))
			return err
		}, apierrors.IsBadRequest},
		{"canceled context", func() error {
			cctx, cancel := context.WithCancel(ctx)
			cancel()
			_, err := f.p.GetMetricByName(cctx, types.NamespacedName{Namespace: "default", Name: "a"}, reqs, labels.Everything())
			return err
		}, apierrors.IsServiceUnavailable},
		{"expired deadline is a timeout", func() error {
			dctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
			defer cancel()
			_, err := f.p.GetMetricByName(dctx, types.NamespacedName{Namespace: "default", Name: "a"}, reqs, labels.Everything())
			return err
		}, apierrors.IsTimeout},
		{"external metric past its deadline is a timeout", func() error {
			dctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
			defer cancel()
			_, err := f.p.GetExternalMetric(dctx, "default", labels.Everything(), provider.ExternalMetricInfo{Metric: "queue_depth"})
			return err
		}, apierrors.IsTimeout},
		{"kubernetes label key selects no series", func() error {
			_, err := f.p.GetMetricByName(ctx, types.NamespacedName{Namespace: "default", Name: "a"}, reqs, mustParse(t, "app.kubernetes.io/name=web"))
			return err
		}, apierrors.IsNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !tc.check(err) {
				t.Errorf("got error %v", err)
			}
		})
	}
}

func TestGetExternalMetric(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name, namespace, sel string
		want                 float64
	}{
		{"namespace sum", "default", "", 30},
		{"selected pod", "default", "pod=a", 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			list, err := f.p.GetExternalMetric(context.Background(), tc.namespace, mustParse(t, tc.sel), provider.ExternalMetricInfo{Metric: "queue_depth"})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Items) != 1 {
				t.Fatalf("got %d items, want 1: %v", len(list.Items), list.Items)
			}
			it := list.Items[0]
			if got := it.Value.AsApproximateFloat64(); got != tc.want || it.MetricName != "queue_depth" {
				t.Errorf("got %s = %v, want %v", it.MetricName, got, tc.want)
			}
			if _, ok := it.MetricLabels["__name__"]; ok {
				t.Errorf("labels keep __name__: %v", it.MetricLabels)
			}
		})
	}
}

func mustParse(t *testing.T, s string) labels.Selector {
	t.Helper()
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

func TestNewProviderRequiresEverything(t *testing.T) {
	_, err := NewProvider(Options{})
	if err == nil {
		t.Fatal("NewProvider(Options{}) succeeded")
	}
	for _, want := range []string{"storage", "rules", "object lister"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
}

// With a long CacheTTL (a remote engine's), the list ages up to it, but a
// request for a metric it lacks rebuilds it once it is a second old: a new
// metric is still served within a scrape.
func TestLongCacheTTLStillFindsNewMetrics(t *testing.T) {
	f := newFixture(t)
	p, err := NewProvider(Options{Storage: f.store, Rules: f.p.disc.rules, Lister: f.p.lister, Mapper: fakeMapper{}, Now: f.clock.Now, CacheTTL: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := provider.CustomMetricInfo{GroupResource: podsGR, Namespaced: true, Metric: "new_gauge"}
	if hasMetric(p.ListAllMetrics(), want) {
		t.Fatalf("new_gauge listed before it was stored")
	}
	app := f.store.Appendable().AppenderV2(context.Background())
	appendOne(t, app, f.clock.Now(), 1, "__name__", "new_gauge", "namespace", "default", "pod", "a")
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(time.Second)
	if hasMetric(p.ListAllMetrics(), want) {
		t.Errorf("the list was rebuilt 1s after the last build, with a 30s TTL")
	}
	if _, err := p.GetMetricByName(context.Background(), types.NamespacedName{Namespace: "default", Name: "a"}, want, labels.Everything()); err != nil {
		t.Errorf("new_gauge of pod a 1s after it was stored: %v", err)
	}
	if !hasMetric(p.ListAllMetrics(), want) {
		t.Errorf("the request's rebuild did not reach the list")
	}
}
