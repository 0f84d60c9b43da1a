package resource

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/promql"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/metrics/pkg/apis/metrics"
)

// fakeGetter answers every pod and node it is asked about whose name is in
// usage, or fails with err.
type fakeGetter struct {
	usage map[string]int64 // name -> cpu millicores
	ts    time.Time
	err   error
}

func (f fakeGetter) GetPodMetrics(pods ...*metav1.PartialObjectMetadata) ([]metrics.PodMetrics, error) {
	if f.err != nil {
		return nil, f.err
	}
	var out []metrics.PodMetrics
	for _, p := range pods {
		if m, ok := f.usage[p.Name]; ok {
			out = append(out, metrics.PodMetrics{
				ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels},
				Timestamp:  metav1.NewTime(f.ts), Window: metav1.Duration{Duration: 15 * time.Second},
				Containers: []metrics.ContainerMetrics{
					{Name: "a", Usage: corev1.ResourceList{corev1.ResourceCPU: *apiresource.NewMilliQuantity(m, apiresource.DecimalSI), corev1.ResourceMemory: *apiresource.NewQuantity(1<<20, apiresource.BinarySI)}},
					{Name: "b", Usage: corev1.ResourceList{corev1.ResourceCPU: *apiresource.NewMilliQuantity(1, apiresource.DecimalSI), corev1.ResourceMemory: *apiresource.NewQuantity(1<<20, apiresource.BinarySI)}},
				},
			})
		}
	}
	// Unsorted on purpose: the storage sorts.
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out, nil
}

func (f fakeGetter) GetNodeMetrics(nodes ...*corev1.Node) ([]metrics.NodeMetrics, error) {
	if f.err != nil {
		return nil, f.err
	}
	var out []metrics.NodeMetrics
	for _, n := range nodes {
		if m, ok := f.usage[n.Name]; ok {
			out = append(out, metrics.NodeMetrics{
				ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels},
				Timestamp:  metav1.NewTime(f.ts), Window: metav1.Duration{Duration: 15 * time.Second},
				Usage: corev1.ResourceList{corev1.ResourceCPU: *apiresource.NewMilliQuantity(m, apiresource.DecimalSI), corev1.ResourceMemory: *apiresource.NewQuantity(1<<30, apiresource.BinarySI)},
			})
		}
	}
	return out, nil
}

func listers(t *testing.T) (cache.GenericLister, corelisters.NodeLister) {
	t.Helper()
	pods := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, p := range []struct{ ns, name, app string }{
		{"default", "web-2", "web"}, {"default", "web-1", "web"}, {"default", "db-1", "db"},
		{"other", "web-1", "web"}, {"default", "new-1", "web"},
	} {
		if err := pods.Add(&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: map[string]string{"app": p.app}}}); err != nil {
			t.Fatal(err)
		}
	}
	nodes := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range []struct{ name, pool string }{{"node-a", "x"}, {"node-b", "y"}, {"node-new", "x"}} {
		if err := nodes.Add(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.name, Labels: map[string]string{"pool": n.pool}}}); err != nil {
			t.Fatal(err)
		}
	}
	return cache.NewGenericLister(pods, corev1.Resource("pods")), corelisters.NewNodeLister(nodes)
}

func newStorages(t *testing.T, g fakeGetter, nodeSelector string, freshness prometheus.Observer, now time.Time) (*podStorage, *nodeStorage) {
	t.Helper()
	pods, nodes := listers(t)
	req, err := labels.ParseToRequirements(nodeSelector)
	if err != nil {
		t.Fatal(err)
	}
	o := InstallOptions{Getter: g, Pods: pods, Nodes: nodes, NodeSelector: req, Freshness: freshness, Now: func() time.Time { return now }}
	return &podStorage{groupResource: metrics.Resource("podmetrics"), o: o}, &nodeStorage{groupResource: metrics.Resource("nodemetrics"), o: o}
}

func inNamespace(ns string) context.Context {
	return genericapirequest.WithNamespace(context.Background(), ns)
}

func listOptions(t *testing.T, label, field string) *metainternalversion.ListOptions {
	t.Helper()
	o := &metainternalversion.ListOptions{}
	if label != "" {
		sel, err := labels.Parse(label)
		if err != nil {
			t.Fatal(err)
		}
		o.LabelSelector = sel
	}
	if field != "" {
		sel, err := fields.ParseSelector(field)
		if err != nil {
			t.Fatal(err)
		}
		o.FieldSelector = sel
	}
	return o
}

func podNames(obj any) []string {
	var out []string
	for _, m := range obj.(*metrics.PodMetricsList).Items {
		out = append(out, m.Namespace+"/"+m.Name)
	}
	return out
}

func nodeNames(obj any) []string {
	var out []string
	for _, m := range obj.(*metrics.NodeMetricsList).Items {
		out = append(out, m.Name)
	}
	return out
}

// TestStorageAnswersAsMetricsServer holds the REST storage to metrics-server
// v0.9.0's behaviour: which objects a list or get returns, in which order,
// and when it is NotFound.
func TestStorageAnswersAsMetricsServer(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	g := fakeGetter{usage: map[string]int64{"web-1": 100, "web-2": 200, "db-1": 300, "node-a": 1000, "node-b": 2000}, ts: now.Add(-5 * time.Second)}
	pods, nodes := newStorages(t, g, "pool in (x,y)", nil, now)

	for _, c := range []struct {
		name, ns, label, field string
		want                   []string
	}{
		{"all namespaces, sorted", "", "", "", []string{"default/db-1", "default/web-1", "default/web-2", "other/web-1"}},
		{"one namespace", "default", "", "", []string{"default/db-1", "default/web-1", "default/web-2"}},
		{"label selector", "default", "app=web", "", []string{"default/web-1", "default/web-2"}},
		{"field selector on name", "", "", "metadata.name=web-1", []string{"default/web-1", "other/web-1"}},
		{"field selector on namespace", "", "", "metadata.namespace!=default", []string{"other/web-1"}},
		{"nothing matches", "default", "app=none", "", nil},
	} {
		t.Run("pods/"+c.name, func(t *testing.T) {
			obj, err := pods.List(inNamespace(c.ns), listOptions(t, c.label, c.field))
			if err != nil {
				t.Fatal(err)
			}
			if got := podNames(obj); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}
	for _, c := range []struct {
		name, label, field string
		want               []string
	}{
		{"all with usage, sorted by name", "", "", []string{"node-a", "node-b"}},
		{"label selector", "pool=y", "", []string{"node-b"}},
		{"field selector", "", "metadata.name=node-a", []string{"node-a"}},
	} {
		t.Run("nodes/"+c.name, func(t *testing.T) {
			obj, err := nodes.List(context.Background(), listOptions(t, c.label, c.field))
			if err != nil {
				t.Fatal(err)
			}
			if got := nodeNames(obj); !reflect.DeepEqual(got, c.want) {
				t.Errorf("got %v, want %v", got, c.want)
			}
		})
	}

	t.Run("get", func(t *testing.T) {
		obj, err := pods.Get(inNamespace("other"), "web-1", &metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if pm := obj.(*metrics.PodMetrics); pm.Namespace != "other" || pm.Name != "web-1" || pm.Labels["app"] != "web" {
			t.Errorf("got %s/%s %v", pm.Namespace, pm.Name, pm.Labels)
		}
		obj, err = nodes.Get(context.Background(), "node-b", &metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if nm := obj.(*metrics.NodeMetrics); nm.Name != "node-b" {
			t.Errorf("got %s", nm.Name)
		}
	})
	for _, c := range []struct {
		name string
		get  func() error
		want string
	}{
		{"unknown pod", func() error { _, err := pods.Get(inNamespace("default"), "nope", nil); return err }, `pods "nope" not found`},
		{"pod without usage", func() error { _, err := pods.Get(inNamespace("default"), "new-1", nil); return err }, `podmetrics.metrics.k8s.io "default/new-1" not found`},
		{"unknown node", func() error { _, err := nodes.Get(context.Background(), "nope", nil); return err }, `node "nope" not found`},
		{"node without usage", func() error { _, err := nodes.Get(context.Background(), "node-new", nil); return err }, `nodemetrics.metrics.k8s.io "node-new" not found`},
	} {
		t.Run("not found/"+c.name, func(t *testing.T) {
			err := c.get()
			if !apierrors.IsNotFound(err) || err.Error() != c.want {
				t.Errorf("got %v, want NotFound %q", err, c.want)
			}
		})
	}
}

// TestReadErrorsKeepTheirKind: a read that fails answers the Status its
// cause calls for. Before this storage, metrics-server's pkg/api wrapped the
// getter's error with fmt.Errorf and every failure below answered 500.
func TestReadErrorsKeepTheirKind(t *testing.T) {
	// The path a deadline takes for real: the getter's own timeout strikes
	// inside the shared engine, which reports it as promql.ErrQueryTimeout.
	store := openStore(t)
	timedOut := NewGetter(GetterOptions{Querier: store, Resolution: 15 * time.Second, Timeout: time.Nanosecond})
	closed := openStore(t)
	if err := closed.Close(); err != nil {
		t.Fatal(err)
	}
	notReady := NewGetter(GetterOptions{Querier: closed, Resolution: 15 * time.Second, Timeout: time.Second})

	for _, c := range []struct {
		name   string
		getter interface {
			GetPodMetrics(...*metav1.PartialObjectMetadata) ([]metrics.PodMetrics, error)
			GetNodeMetrics(...*corev1.Node) ([]metrics.NodeMetrics, error)
		}
		code int32
	}{
		{"deadline in the engine", timedOut, http.StatusGatewayTimeout},
		{"storage closed", notReady, http.StatusServiceUnavailable},
		{"cancelled", fakeGetter{err: fmt.Errorf("query resource usage: %w", promql.ErrQueryCanceled("context canceled"))}, http.StatusServiceUnavailable},
		{"a getter's own Status", fakeGetter{err: apierrors.NewTooManyRequests("slow down", 1)}, http.StatusTooManyRequests},
		{"anything else", fakeGetter{err: errors.New("disk on fire")}, http.StatusInternalServerError},
	} {
		t.Run(c.name, func(t *testing.T) {
			pods, nodes := listers(t)
			o := InstallOptions{Getter: c.getter, Pods: pods, Nodes: nodes, Now: time.Now}
			ps := &podStorage{groupResource: metrics.Resource("podmetrics"), o: o}
			ns := &nodeStorage{groupResource: metrics.Resource("nodemetrics"), o: o}
			for what, read := range map[string]func() error{
				"list pods": func() error { _, err := ps.List(inNamespace(""), nil); return err },
				"get pod":   func() error { _, err := ps.Get(inNamespace("default"), "web-1", nil); return err },
				"list nodes": func() error {
					_, err := ns.List(context.Background(), nil)
					return err
				},
				"get node": func() error { _, err := ns.Get(context.Background(), "node-a", nil); return err },
			} {
				err := read()
				if err == nil {
					t.Fatalf("%s: no error", what)
				}
				// What the apiserver writes for the error.
				if got := responsewriters.ErrorToAPIStatus(err); got.Code != c.code {
					t.Errorf("%s: %d %s (%s), want %d", what, got.Code, got.Reason, got.Message, c.code)
				}
			}
		})
	}

	// Why: the apiserver looks at the error itself, not at what it wraps.
	wrapped := fmt.Errorf("failed reading pods metrics: %w", apierrors.NewTimeoutError("x", 1))
	if got := responsewriters.ErrorToAPIStatus(wrapped).Code; got != http.StatusInternalServerError {
		t.Errorf("a wrapped Timeout answers %d; if the apiserver now unwraps, this storage's error mapping could go", got)
	}
}

// TestFreshnessIsObserved: every answered usage is observed once, with its
// age, as metrics-server's metric_freshness_seconds is.
func TestFreshnessIsObserved(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "f", Buckets: []float64{1, 10}})
	g := fakeGetter{usage: map[string]int64{"web-1": 1, "web-2": 1, "node-a": 1}, ts: now.Add(-5 * time.Second)}
	pods, nodes := newStorages(t, g, "", h, now)
	if _, err := pods.List(inNamespace("default"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes.Get(context.Background(), "node-a", nil); err != nil {
		t.Fatal(err)
	}
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	if got := m.GetHistogram(); got.GetSampleCount() != 3 || got.GetSampleSum() != 15 {
		t.Errorf("observed %d answers summing %gs, want 3 summing 15s", got.GetSampleCount(), got.GetSampleSum())
	}
}

// TestTables: `kubectl get podmetrics` sums containers per pod; columns
// come from the first row, sorted, between Name and Window.
func TestTables(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	g := fakeGetter{usage: map[string]int64{"web-1": 100, "node-a": 1000}, ts: now}
	pods, nodes := newStorages(t, g, "", nil, now)
	obj, err := pods.List(inNamespace("default"), nil)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err := pods.ConvertToTable(context.Background(), obj, nil)
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, c := range tbl.ColumnDefinitions {
		cols = append(cols, c.Name)
	}
	if want := []string{"Name", "cpu", "memory", "Window"}; !reflect.DeepEqual(cols, want) {
		t.Errorf("pod columns %v, want %v", cols, want)
	}
	if len(tbl.Rows) != 1 || !reflect.DeepEqual(tbl.Rows[0].Cells, []any{"web-1", "101m", "2Mi", "15s"}) {
		t.Errorf("pod rows %+v", tbl.Rows)
	}
	nm, err := nodes.Get(context.Background(), "node-a", nil)
	if err != nil {
		t.Fatal(err)
	}
	tbl, err = nodes.ConvertToTable(context.Background(), nm, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tbl.Rows) != 1 || !reflect.DeepEqual(tbl.Rows[0].Cells, []any{"node-a", "1", "1Gi", "15s"}) {
		t.Errorf("node rows %+v", tbl.Rows)
	}
	if _, ok := tbl.Rows[0].Object.Object.(*metrics.NodeMetrics); !ok {
		t.Errorf("row object %T, want *NodeMetrics", tbl.Rows[0].Object.Object)
	}
}
