package server

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	cmv1beta2 "k8s.io/metrics/pkg/apis/custom_metrics/v1beta2"
	customclient "k8s.io/metrics/pkg/client/custom_metrics"
	externalclient "k8s.io/metrics/pkg/client/external_metrics"
)

// fakePod serves Prometheus text on its own loopback address, as an
// annotated pod would: a counter growing at a fixed rate in real time, a
// gauge, and optionally one extra gauge.
type fakePod struct {
	ns, name string
	ip       string
	port     int
	rate     float64 // http_requests_total per second
	start    time.Time

	mu          sync.Mutex
	queue       float64
	extra       string // name of an extra gauge; empty for none
	extraServed int    // scrapes answered with extra
	redirectTo  string // when set, every scrape is answered 302 to it
	served      int
}

func newFakePod(t testing.TB, ns, name, ip string, rate float64) *fakePod {
	p := &fakePod{ns: ns, name: name, ip: ip, rate: rate, start: time.Now(), queue: 7}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(p.serve)}}
	srv.Start()
	t.Cleanup(srv.Close)
	p.port = ln.Addr().(*net.TCPAddr).Port
	return p
}

func (p *fakePod) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/metrics" {
		http.NotFound(w, r)
		return
	}
	p.mu.Lock()
	p.served++
	queue, extra, redirectTo := p.queue, p.extra, p.redirectTo
	if redirectTo != "" {
		p.mu.Unlock()
		http.Redirect(w, r, redirectTo, http.StatusFound)
		return
	}
	if extra != "" {
		p.extraServed++
	}
	p.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	// The application labels its requests with the Service in front of
	// it, which object metrics read.
	service := strings.SplitN(p.name, "-", 2)[0]
	fmt.Fprintf(w, "# TYPE http_requests_total counter\nhttp_requests_total{code=\"200\",service=%q} %g\n", service, p.rate*time.Since(p.start).Seconds())
	fmt.Fprintf(w, "# TYPE queue_depth gauge\nqueue_depth %g\n", queue)
	if extra != "" {
		fmt.Fprintf(w, "# TYPE %s gauge\n%s 1\n", extra, extra)
	}
}

func (p *fakePod) extraScrapes() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.extraServed
}

func (p *fakePod) set(queue float64, extra string) {
	p.mu.Lock()
	p.queue, p.extra = queue, extra
	p.mu.Unlock()
}

func (p *fakePod) register(api *fakeAPIServer, lbls map[string]string) {
	api.addPodWith(p.ns, p.name, lbls, map[string]string{
		"prometheus.io/scrape": "true",
		"prometheus.io/port":   strconv.Itoa(p.port),
	}, p.ip)
}

// customGateway runs the whole server with annotated fake pods scraped
// every second through the real pod job, configured by a --config file.
// adapterConfig, when not empty, is written to a file for --adapter-config.
func customGateway(t testing.TB, adapterConfig string) (*gateway, map[string]*fakePod) {
	dir := t.TempDir()
	configFile := filepath.Join(dir, "gateway.yaml")
	writeFile(t, configFile, "apiVersion: metrics-gateway.io/v1alpha1\nkind: GatewayConfig\npods:\n  scrapeInterval: 1s\n")
	var adapterFile string
	if adapterConfig != "" {
		adapterFile = filepath.Join(dir, "adapter.yaml")
		writeFile(t, adapterFile, adapterConfig)
	}
	g := startGateway(t, "", func(o *Options) {
		o.ConfigFile = configFile
		o.AdapterConfig = adapterFile
	})
	pods := map[string]*fakePod{
		"web-1":   newFakePod(t, "default", "web-1", "127.0.0.4", 10),
		"web-2":   newFakePod(t, "default", "web-2", "127.0.0.5", 20),
		"other-1": newFakePod(t, "default", "other-1", "127.0.0.6", 30),
		"kube-1":  newFakePod(t, "kube-system", "kube-1", "127.0.0.7", 5),
	}
	for name, p := range pods {
		app := strings.TrimSuffix(strings.TrimSuffix(name, "-1"), "-2")
		p.register(g.api, map[string]string{"app": app})
	}
	return g, pods
}

func writeFile(t testing.TB, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// restConfig is a client config for the gateway itself.
func (g *gateway) restConfig() *rest.Config {
	return &rest.Config{Host: g.url, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
}

// hpaMapper knows the kinds the HPA asks custom metrics for.
func hpaMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper([]schema.GroupVersion{{Version: "v1"}})
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Pod"}, meta.RESTScopeNamespace)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}, meta.RESTScopeRoot)
	m.Add(schema.GroupVersionKind{Version: "v1", Kind: "Service"}, meta.RESTScopeNamespace)
	return m
}

// TestGatewayServesCustomMetrics drives annotated pods → pod job → TSDB →
// zero-config rules → custom.metrics.k8s.io through the real server wiring,
// and reads the answers with the HPA controller's own clients.
func TestGatewayServesCustomMetrics(t *testing.T) {
	g, pods := customGateway(t, "")
	cfg := g.restConfig()
	dc := discovery.NewDiscoveryClientForConfigOrDie(cfg)
	preferred := customclient.NewForConfig(cfg, hpaMapper(), customclient.NewAvailableAPIsGetter(dc))
	webSel := labels.SelectorFromSet(labels.Set{"app": "web"})

	t.Run("counter is served as a per-second rate", func(t *testing.T) {
		clients := map[string]customclient.CustomMetricsClient{"preferred": preferred}
		for _, v := range []string{"v1beta1", "v1beta2"} {
			c, err := customclient.NewForVersionForConfig(rest.CopyConfig(cfg), hpaMapper(), schema.GroupVersion{Group: "custom.metrics.k8s.io", Version: v})
			if err != nil {
				t.Fatal(err)
			}
			clients[v] = c
		}
		for name, c := range clients {
			eventually(t, 20*time.Second, name+": http_requests for app=web", func() error {
				l, err := c.NamespacedMetrics("default").GetForObjects(schema.GroupKind{Kind: "Pod"}, webSel, "http_requests", labels.Everything())
				if err != nil {
					return err
				}
				return checkValues(l.Items, map[string]float64{"web-1": pods["web-1"].rate, "web-2": pods["web-2"].rate}, 0.01)
			})
		}
	})

	t.Run("one pod and its described object", func(t *testing.T) {
		// other-1 is scraped at its own offset: its rate window may fill
		// after web-1's and web-2's.
		var v *cmv1beta2.MetricValue
		eventually(t, 20*time.Second, "http_requests of other-1", func() error {
			var err error
			if v, err = preferred.NamespacedMetrics("default").GetForObject(schema.GroupKind{Kind: "Pod"}, "other-1", "http_requests", labels.Everything()); err != nil {
				return err
			}
			return checkValues([]cmv1beta2.MetricValue{*v}, map[string]float64{"other-1": 30}, 0.01)
		})
		if o := v.DescribedObject; o.Kind != "Pod" || o.APIVersion != "v1" || o.Namespace != "default" {
			t.Errorf("described object %+v", o)
		}
	})

	t.Run("gauge and metric selector", func(t *testing.T) {
		l, err := preferred.NamespacedMetrics("default").GetForObjects(schema.GroupKind{Kind: "Pod"}, webSel, "queue_depth", labels.Everything())
		if err != nil {
			t.Fatal(err)
		}
		if err := checkValues(l.Items, map[string]float64{"web-1": 7, "web-2": 7}, 0); err != nil {
			t.Error(err)
		}
		sel := labels.SelectorFromSet(labels.Set{"code": "200"})
		l, err = preferred.NamespacedMetrics("default").GetForObjects(schema.GroupKind{Kind: "Pod"}, webSel, "http_requests", sel)
		if err != nil || len(l.Items) != 2 {
			t.Fatalf("code=200: %v %+v", err, l)
		}
		l, err = preferred.NamespacedMetrics("default").GetForObjects(schema.GroupKind{Kind: "Pod"}, webSel, "http_requests", labels.SelectorFromSet(labels.Set{"code": "500"}))
		if err != nil || len(l.Items) != 0 {
			t.Errorf("code=500: %v %+v", err, l)
		}
	})

	// Rates differ from run to run in their last digits; the gauge and the
	// discovery documents do not.
	t.Run("golden answers", func(t *testing.T) {
		g.goldenAnswers(t, time.Time{}, map[string]string{
			"custom.metrics.k8s.io-v1beta2-discovery":   "/apis/custom.metrics.k8s.io/v1beta2",
			"custom.metrics.k8s.io-v1beta1-discovery":   "/apis/custom.metrics.k8s.io/v1beta1",
			"custom.metrics.k8s.io-v1beta2-queue_depth": "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/queue_depth?labelSelector=app%3Dweb",
			"custom.metrics.k8s.io-v1beta1-queue_depth": "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/*/queue_depth?labelSelector=app%3Dweb",
			"custom.metrics.k8s.io-not-found":           "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/no_such_metric",
		}, http.StatusNotFound)
	})

	t.Run("namespace aggregate", func(t *testing.T) {
		eventually(t, 20*time.Second, "http_requests of namespace default", func() error {
			v, err := preferred.RootScopedMetrics().GetForObject(schema.GroupKind{Kind: "Namespace"}, "default", "http_requests", labels.Everything())
			if err != nil {
				return err
			}
			return checkValues([]cmv1beta2.MetricValue{*v}, map[string]float64{"default": 60}, 0.01)
		})
	})

	t.Run("discovery lists metrics", func(t *testing.T) {
		for _, v := range []string{"v1beta1", "v1beta2"} {
			l, err := dc.ServerResourcesForGroupVersion("custom.metrics.k8s.io/" + v)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]bool{}
			for _, r := range l.APIResources {
				got[r.Name] = r.Namespaced
			}
			for name, namespaced := range map[string]bool{"pods/http_requests": true, "pods/queue_depth": true, "namespaces/http_requests": false} {
				if ns, ok := got[name]; !ok || ns != namespaced {
					t.Errorf("%s: %s listed %v namespaced %v; all: %v", v, name, ok, ns, got)
				}
			}
			if _, ok := got["pods/http_requests_total"]; ok {
				t.Errorf("%s: the counter is listed under its raw name", v)
			}
		}
	})

	t.Run("new metric is listed within one scrape", func(t *testing.T) {
		pods["web-2"].set(7, "brand_new_metric")
		start := time.Now()
		var n int // scrapes that carried the metric when the listing request began
		eventually(t, 10*time.Second, "brand_new_metric listed", func() error {
			n = pods["web-2"].extraScrapes()
			l, err := dc.ServerResourcesForGroupVersion("custom.metrics.k8s.io/v1beta1")
			if err != nil {
				return err
			}
			for _, r := range l.APIResources {
				if r.Name == "pods/brand_new_metric" {
					return nil
				}
			}
			return fmt.Errorf("not listed")
		})
		// Counted in scrapes, not seconds, so a slow machine cannot fail
		// it: the first scrape that carries the metric makes it listable,
		// and the 1s discovery cache may hide it for one more 1s interval.
		t.Logf("listed after %v, %d scrape(s) of the new metric", time.Since(start).Round(10*time.Millisecond), n)
		if n > 2 {
			t.Errorf("listed only after %d scrapes of the new metric, want at most one scrape plus the cache TTL", n)
		}
		if _, err := preferred.NamespacedMetrics("default").GetForObject(schema.GroupKind{Kind: "Pod"}, "web-2", "brand_new_metric", labels.Everything()); err != nil {
			t.Error(err)
		}
	})

	t.Run("errors are Status", func(t *testing.T) {
		g.checkStatuses(t, []statusCase{
			{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/no_such_metric", "NotFound", 404},
			{"/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/*/no_such_metric", "NotFound", 404},
			{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/missing-pod/http_requests", "NotFound", 404},
			{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/http_requests?labelSelector=app+in+(", "BadRequest", 400},
			{"/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/*/http_requests?metricLabelSelector=%21%21", "BadRequest", 400},
			{"/apis/external.metrics.k8s.io/v1beta1/namespaces/default/no_such_metric", "NotFound", 404},
		})
	})

	t.Run("metrics.k8s.io still served", func(t *testing.T) {
		if code, body := g.get(t, "/apis/metrics.k8s.io/v1beta1/nodes", ""); code != 200 {
			t.Errorf("nodes: %d %s", code, body)
		}
		if code, body := g.get(t, "/openapi/v2", ""); code != 200 || !strings.Contains(string(body), "MetricValueList") || !strings.Contains(string(body), "PodMetrics") {
			t.Errorf("openapi: %d, %d bytes", code, len(body))
		}
	})
}

// adapterRules is a prometheus-adapter config in the adapter's own format:
// a renamed counter, an object metric of Services, and an external
// queue-depth metric.
const adapterRules = `rules:
- seriesQuery: 'http_requests_total{namespace!="",service!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      service: {resource: "service"}
  name:
    matches: "^http_requests_total$"
    as: "service_requests_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[5s])) by (<<.GroupBy>>)'
- seriesQuery: 'http_requests_total{namespace!="",pod!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
      pod: {resource: "pod"}
  name:
    matches: "^(.*)_total$"
    as: "${1}_per_second"
  metricsQuery: 'sum(rate(<<.Series>>{<<.LabelMatchers>>}[5s])) by (<<.GroupBy>>)'
externalRules:
- seriesQuery: 'queue_depth{namespace!=""}'
  resources:
    overrides:
      namespace: {resource: "namespace"}
  metricsQuery: 'sum(<<.Series>>{<<.LabelMatchers>>}) by (namespace)'
`

// TestGatewayServesAdapterConfig serves a prometheus-adapter file given
// with --adapter-config, custom and external rules alike, read with the
// HPA controller's clients.
func TestGatewayServesAdapterConfig(t *testing.T) {
	g, pods := customGateway(t, adapterRules)
	cfg := g.restConfig()
	dc := discovery.NewDiscoveryClientForConfigOrDie(cfg)
	preferred := customclient.NewForConfig(cfg, hpaMapper(), customclient.NewAvailableAPIsGetter(dc))
	eventually(t, 20*time.Second, "renamed metric", func() error {
		l, err := preferred.NamespacedMetrics("default").GetForObjects(schema.GroupKind{Kind: "Pod"}, labels.SelectorFromSet(labels.Set{"app": "web"}), "http_requests_per_second", labels.Everything())
		if err != nil {
			return err
		}
		return checkValues(l.Items, map[string]float64{"web-1": 10, "web-2": 20}, 0.01)
	})
	// An object metric, as an HPA of type Object asks for it.
	v, err := preferred.NamespacedMetrics("default").GetForObject(schema.GroupKind{Kind: "Service"}, "web", "service_requests_per_second", labels.Everything())
	if err != nil {
		t.Fatal(err)
	}
	if err := checkValues([]cmv1beta2.MetricValue{*v}, map[string]float64{"web": 30}, 0.01); err != nil {
		t.Error(err)
	}
	if o := v.DescribedObject; o.Kind != "Service" || o.APIVersion != "v1" || o.Namespace != "default" {
		t.Errorf("described object %+v", o)
	}
	if code, _ := g.get(t, "/apis/custom.metrics.k8s.io/v1beta1/namespaces/default/pods/*/http_requests", ""); code != http.StatusNotFound {
		t.Errorf("zero-config name served with an adapter config: %d", code)
	}

	ext, err := externalclient.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pods["web-1"].set(12, "")
	eventually(t, 10*time.Second, "external queue_depth", func() error {
		l, err := ext.NamespacedMetrics("default").List("queue_depth", labels.Everything())
		if err != nil {
			return err
		}
		// web-1 12, web-2 7, other-1 7; kube-system's pod is not counted.
		if len(l.Items) != 1 || l.Items[0].Value.Value() != 26 || l.Items[0].MetricName != "queue_depth" {
			return fmt.Errorf("got %+v", l.Items)
		}
		return nil
	})
	g.goldenAnswers(t, time.Time{}, map[string]string{
		"external.metrics.k8s.io-discovery":   "/apis/external.metrics.k8s.io/v1beta1",
		"external.metrics.k8s.io-queue_depth": "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth",
	})
	l, err := ext.NamespacedMetrics("kube-system").List("queue_depth", labels.Everything())
	if err != nil || len(l.Items) != 1 || l.Items[0].Value.Value() != 7 {
		t.Errorf("kube-system: %v %+v", err, l)
	}
}

// checkValues compares items by described object name with want, within
// a relative tolerance.
func checkValues(items []cmv1beta2.MetricValue, want map[string]float64, tol float64) error {
	got := map[string]float64{}
	for _, it := range items {
		got[it.DescribedObject.Name] = it.Value.AsApproximateFloat64()
	}
	if len(got) != len(want) {
		return fmt.Errorf("got %v, want %v", got, want)
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v, ok := got[n]
		if !ok || math.Abs(v-want[n]) > tol*want[n]+1e-9 {
			return fmt.Errorf("%s: got %v, want %v ±%.0f%% (all: %v)", n, v, want[n], tol*100, got)
		}
	}
	return nil
}

// TestGatewayServesAdapterResourceRules: an adapter file with resourceRules
// answers metrics.k8s.io from them, as prometheus-adapter would, here over
// the kubelet fixtures. The adapter's published rules use irate over the
// kubelet's counters, so cpu equals metrics-server's rate between the last
// two samples; the window is the rules' 5m.
func TestGatewayServesAdapterResourceRules(t *testing.T) {
	g := startGateway(t, "", func(o *Options) { o.AdapterConfig = "../rules/testdata/adapter-default.yaml" })
	base := g.serveFixtures(t)
	want := wantPods("", base)
	ctx := context.Background()
	eventually(t, 10*time.Second, "pods from resourceRules", func() error {
		l, err := g.client.MetricsV1beta1().PodMetricses("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		got := flattenPods(l.Items)
		for _, name := range []string{"default/web-1", "kube-system/dns-1"} {
			p, ok := got[name]
			if !ok {
				return fmt.Errorf("%s missing: %v", name, keys(got))
			}
			if !reflect.DeepEqual(p.Containers, want[name].Containers) || p.Window != 5*time.Minute {
				return fmt.Errorf("%s: got %+v, want containers %+v and a 5m window", name, p, want[name].Containers)
			}
		}
		return nil
	})
	n, err := g.client.MetricsV1beta1().NodeMetricses().Get(ctx, "node-a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cpu, mem := n.Usage.Cpu().ScaledValue(-9), n.Usage.Memory().Value(); cpu != 200_000_000 || mem != 2181038080 || n.Window.Duration != 5*time.Minute {
		t.Errorf("node-a: cpu %d mem %d window %v", cpu, mem, n.Window.Duration)
	}
}
