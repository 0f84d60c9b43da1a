package server

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	promlabels "github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	customclient "k8s.io/metrics/pkg/client/custom_metrics"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
)

// receiver is a remote-write endpoint that keeps the labels of every
// series it was sent.
type receiver struct {
	mu     sync.Mutex
	series map[string]map[string]string // by its labels' text
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := remote.DecodeWriteRequest(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, ts := range req.Timeseries {
		ls := map[string]string{}
		for _, l := range ts.Labels {
			ls[l.Name] = l.Value
		}
		rc.series[fmt.Sprint(ls)] = ls
	}
	w.WriteHeader(http.StatusNoContent)
}

// received is every series received whose labels include want.
func (rc *receiver) received(want map[string]string) []map[string]string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []map[string]string
	for _, ls := range rc.series {
		if labels.SelectorFromSet(want).Matches(labels.Set(ls)) {
			out = append(out, ls)
		}
	}
	return out
}

// TestScaleOutWritesAndQueriesTheEngine runs a gateway in scale-out mode
// against a second gateway standing in for the engine (its query API is a
// Prometheus HTTP API): what it scrapes reaches a remote-write endpoint with
// its replica label, its custom metrics are evaluated by the engine, and
// with the engine gone they fail with a 503 naming it.
func TestScaleOutWritesAndQueriesTheEngine(t *testing.T) {
	engine, pods := customGateway(t, "")
	rc := &receiver{series: map[string]map[string]string{}}
	rw := httptest.NewServer(rc)
	t.Cleanup(rw.Close)

	dir, storageDir := t.TempDir(), t.TempDir()
	configFile := filepath.Join(dir, "gateway.yaml")
	writeFile(t, configFile, fmt.Sprintf(`apiVersion: metrics-gateway.io/v1alpha1
kind: GatewayConfig
pods:
  scrapeInterval: 1s
remoteWrite:
- url: %s/api/v1/write
  queue_config:
    batch_send_deadline: 1s
queryBackend:
  url: %s/prometheus
  tls_config:
    insecure_skip_verify: true
`, rw.URL, engine.url))
	t.Setenv("POD_NAME", "metrics-gateway-0")
	g := startGateway(t, storageDir, func(o *Options) { o.ConfigFile = configFile })
	for name, p := range pods {
		app := strings.TrimSuffix(strings.TrimSuffix(name, "-1"), "-2")
		p.register(g.api, map[string]string{"app": app})
	}
	g.api.addNode("node-a", "127.0.0.2", g.kubelet["node-a"].port, nil)
	g.kubelet["node-a"].setRound(t, "round1.txt", fixtureT0, time.Now(), "")

	eventually(t, 30*time.Second, "kubelet and pod series remote-written with the replica label", func() error {
		for _, want := range []map[string]string{
			{"__name__": "http_requests_total", "pod": "web-1", scrape.ReplicaLabel: "metrics-gateway-0"},
			{"job": scrape.KubeletJobName, scrape.ReplicaLabel: "metrics-gateway-0"},
		} {
			if len(rc.received(want)) == 0 {
				jobs := map[string]int{}
				for _, ls := range rc.received(nil) {
					jobs[ls["job"]+"/"+ls["__name__"]]++
				}
				return fmt.Errorf("no series with %v received (have %v)", want, jobs)
			}
		}
		return nil
	})

	cfg := g.restConfig()
	dc := discovery.NewDiscoveryClientForConfigOrDie(cfg)
	client := customclient.NewForConfig(cfg, hpaMapper(), customclient.NewAvailableAPIsGetter(dc))
	pod := schema.GroupKind{Kind: "Pod"}
	eventually(t, 30*time.Second, "web-1's http_requests through the engine", func() error {
		v, err := client.NamespacedMetrics("default").GetForObject(pod, "web-1", "http_requests", labels.Everything())
		if err != nil {
			return err
		}
		// The fake pod counts 10 requests a second exactly.
		if got := v.Value.AsApproximateFloat64(); got < 9.9 || got > 10.1 {
			return fmt.Errorf("http_requests %v, want 10", got)
		}
		return nil
	})

	// The pods' series are not in the replica's TSDB (see the end): the
	// graph page draws them from the engine.
	if code, body := g.get(t, "/ui/graph?range=5m&expr="+url.QueryEscape(`http_requests_total{pod="web-1"}`), ""); code != http.StatusOK || !strings.Contains(string(body), "<polyline") {
		t.Errorf("/ui/graph of a pod's series: %d %s; want a chart from the engine", code, body)
	}

	engine.stop()
	start := time.Now()
	code, body := g.get(t, "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods/web-1/http_requests", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), engine.url) || !strings.Contains(string(body), `"kind":"Status"`) {
		t.Errorf("with the engine stopped: %d %s; want a 503 Status naming %s", code, body, engine.url)
	}
	t.Logf("engine stopped: %d in %v", code, time.Since(start))
	eventually(t, 10*time.Second, "/readyz failing on the query backend", func() error {
		code, body := g.get(t, "/readyz?verbose", "")
		if code == http.StatusOK || !strings.Contains(string(body), "[-]"+BackendCheckName+" failed") {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		return nil
	})
	if code, body := g.get(t, "/readyz?exclude="+BackendCheckName, ""); code != http.StatusOK {
		t.Errorf("/readyz without the backend's check: %d %s", code, body)
	}
	if code, body := g.get(t, "/apis/metrics.k8s.io/v1beta1/nodes", ""); code != http.StatusOK {
		t.Errorf("metrics.k8s.io with the engine stopped: %d %s", code, body)
	}

	// The pods' series were only written to the engine: the replica's own
	// TSDB holds what it answers from itself.
	g.stop()
	for matcher, want := range map[[2]string]bool{
		{"job", scrape.KubeletJobName}:           true,
		{"job", scrape.PodJobName}:               false,
		{"__name__", "http_requests_total"}:      false,
		{"__name__", "autoscaling_hpa_replicas"}: false, // no HPA here
	} {
		if got := localSeries(t, storageDir, matcher[0], matcher[1]); (got > 0) != want {
			t.Errorf("the replica's TSDB holds %d series with %s=%q; want some: %v", got, matcher[0], matcher[1], want)
		}
	}
}

// localSeries counts the series of a stopped gateway's TSDB at dir whose
// label name has value.
func localSeries(t *testing.T, dir, name, value string) int {
	t.Helper()
	db, err := tsdb.OpenDBReadOnly(dir, "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	q, err := db.Querier(math.MinInt64, math.MaxInt64)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	n := 0
	for set := q.Select(context.Background(), false, nil, promlabels.MustNewMatcher(promlabels.MatchEqual, name, value)); set.Next(); {
		n++
	}
	return n
}

// TestScaleOutResourcePathUnchanged: with remote write and a query backend
// (unreachable here), metrics.k8s.io answers exactly the fixtures'
// numbers from the replica's own TSDB, as in single-process mode.
func TestScaleOutResourcePathUnchanged(t *testing.T) {
	rc := &receiver{series: map[string]map[string]string{}}
	rw := httptest.NewServer(rc)
	t.Cleanup(rw.Close)
	configFile := filepath.Join(t.TempDir(), "gateway.yaml")
	writeFile(t, configFile, fmt.Sprintf(`apiVersion: metrics-gateway.io/v1alpha1
kind: GatewayConfig
remoteWrite:
- url: %s/api/v1/write
queryBackend:
  url: http://127.0.0.1:1
`, rw.URL))
	g := startGateway(t, "", func(o *Options) { o.ConfigFile = configFile; o.Shards = 2; o.Shard = 1 })
	base := g.serveFixtures(t)
	want := merge(wantPods("", base), wantPods("b-", base))
	eventually(t, 10*time.Second, "all pods answered", func() error {
		l, err := g.client.MetricsV1beta1().PodMetricses("").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		if got := flattenPods(l.Items); !reflect.DeepEqual(got, want) {
			return fmt.Errorf("got %+v,\nwant %+v", got, want)
		}
		return nil
	})
}
