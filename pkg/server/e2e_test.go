package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/metrics/pkg/apis/metrics/v1beta1"
)

// wantPods are the fixture's answers at round 2 under metrics-server's
// rules (pkg/scrape/testdata/kubelet/README.md): web-1 and dns-1 from the
// two samples 15s apart; restart-1 restarted 10s before round 2, so it is
// measured from its start time (0.3s over 10s); nodata-1 is left out since
// its container "starting" has no usage; pending-1 was never scraped.
func wantPods(prefix string, base time.Time) map[string]podUsage {
	return map[string]podUsage{
		"default/" + prefix + "web-1": {Containers: map[string]usage{
			"app":     {CPU: 50_000_000, Mem: 106954752},
			"sidecar": {CPU: 10_000_000, Mem: 20971520},
		}, Window: 15 * time.Second, Timestamp: base},
		"kube-system/" + prefix + "dns-1": {Containers: map[string]usage{
			"dns": {CPU: 20_000_000, Mem: 31457280},
		}, Window: 15 * time.Second, Timestamp: base},
		"default/" + prefix + "restart-1": {Containers: map[string]usage{
			"app": {CPU: 30_000_000, Mem: 10485760},
		}, Window: 10 * time.Second, Timestamp: base},
	}
}

func merge(ms ...map[string]podUsage) map[string]podUsage {
	out := map[string]podUsage{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestGatewayServesKubeletFixtures drives scrape → TSDB → PromQL →
// metrics.k8s.io through the real server wiring, with fixture bodies of
// the kubelet's own collector.
var creationTimestamps = regexp.MustCompile(`"creationTimestamp":"[^"]*"`)

func TestGatewayServesKubeletFixtures(t *testing.T) {
	g := startGateway(t, "")
	base := g.serveFixtures(t)
	ctx := context.Background()
	want := merge(wantPods("", base), wantPods("b-", base))

	t.Run("list all pods", func(t *testing.T) {
		eventually(t, 10*time.Second, "all pods answered", func() error {
			l, err := g.client.MetricsV1beta1().PodMetricses("").List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			if got := flattenPods(l.Items); !reflect.DeepEqual(got, want) {
				return fmt.Errorf("got %+v\nwant %+v", got, want)
			}
			return nil
		})
	})

	t.Run("golden answers", func(t *testing.T) {
		g.goldenAnswers(t, base, map[string]string{
			"metrics.k8s.io-discovery":    "/apis/metrics.k8s.io/v1beta1",
			"metrics.k8s.io-pods":         "/apis/metrics.k8s.io/v1beta1/pods",
			"metrics.k8s.io-nodes":        "/apis/metrics.k8s.io/v1beta1/nodes",
			"metrics.k8s.io-pod-web-1":    "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web-1",
			"metrics.k8s.io-pods-select":  "/apis/metrics.k8s.io/v1beta1/namespaces/kube-system/pods?labelSelector=app%3Ddns",
			"metrics.k8s.io-not-found":    "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/no-such-pod",
			"metrics.k8s.io-group":        "/apis/metrics.k8s.io",
			"metrics.k8s.io-v1-discovery": "/apis/metrics.k8s.io/v1",
			"metrics.k8s.io-v1-pods":      "/apis/metrics.k8s.io/v1/pods",
		}, http.StatusNotFound)
	})

	// kubectl 1.37 top reads v1, the HPA controller v1beta1: the same
	// answer under either version, field for field.
	t.Run("v1 and v1beta1 answer alike", func(t *testing.T) {
		for _, path := range []string{"/pods", "/nodes", "/namespaces/default/pods/web-1", "/namespaces/kube-system/pods?labelSelector=app%3Ddns"} {
			code1, v1 := g.get(t, "/apis/metrics.k8s.io/v1"+path, "application/json")
			codeBeta, beta := g.get(t, "/apis/metrics.k8s.io/v1beta1"+path, "application/json")
			if code1 != http.StatusOK || codeBeta != http.StatusOK {
				t.Fatalf("%s: v1 %d %s, v1beta1 %d %s", path, code1, v1, codeBeta, beta)
			}
			asBeta := bytes.ReplaceAll(v1, []byte(`"apiVersion":"metrics.k8s.io/v1"`), []byte(`"apiVersion":"metrics.k8s.io/v1beta1"`))
			// As metrics-server, creationTimestamp is the time of the
			// request: two requests may straddle a second.
			if !bytes.Equal(creationTimestamps.ReplaceAll(asBeta, nil), creationTimestamps.ReplaceAll(beta, nil)) {
				t.Errorf("%s: v1 answered\n%s\nv1beta1\n%s", path, v1, beta)
			}
		}
		if _, err := g.client.MetricsV1().PodMetricses("default").Get(ctx, "web-1", metav1.GetOptions{}); err != nil {
			t.Errorf("client-go's metrics v1 client: %v", err)
		}
		// The OpenAPI document of v1 (kubectl explain, server-side apply
		// tooling) has its own models, not v1beta1's.
		code, doc := g.get(t, "/openapi/v3/apis/metrics.k8s.io/v1", "application/json")
		if code != http.StatusOK || !bytes.Contains(doc, []byte(`"io.k8s.metrics.pkg.apis.metrics.v1.PodMetrics"`)) ||
			!bytes.Contains(doc, []byte(`"$ref":"#/components/schemas/io.k8s.metrics.pkg.apis.metrics.v1.ContainerMetrics"`)) ||
			bytes.Contains(doc, []byte("metrics.v1beta1.")) {
			t.Errorf("/openapi/v3/apis/metrics.k8s.io/v1: %d\n%.2000s", code, doc)
		}
	})

	t.Run("list nodes", func(t *testing.T) {
		l, err := g.client.MetricsV1beta1().NodeMetricses().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]usage{}
		for _, n := range l.Items {
			got[n.Name] = usage{CPU: n.Usage.Cpu().ScaledValue(-9), Mem: n.Usage.Memory().Value()}
			if n.Window.Duration != 15*time.Second || !n.Timestamp.Time.Equal(base) {
				t.Errorf("node %s: window %v timestamp %v, want 15s %v", n.Name, n.Window.Duration, n.Timestamp.Time, base)
			}
		}
		wantNodes := map[string]usage{"node-a": {CPU: 200_000_000, Mem: 2181038080}, "node-b": {CPU: 200_000_000, Mem: 2181038080}}
		if !reflect.DeepEqual(got, wantNodes) {
			t.Errorf("nodes: got %v, want %v", got, wantNodes)
		}
	})

	t.Run("selectors", func(t *testing.T) {
		for _, tc := range []struct {
			name, ns string
			opts     metav1.ListOptions
			want     []string
		}{
			{"namespace", "kube-system", metav1.ListOptions{}, []string{"kube-system/b-dns-1", "kube-system/dns-1"}},
			{"label", "default", metav1.ListOptions{LabelSelector: "app=web"}, []string{"default/b-web-1", "default/web-1"}},
			{"label set", "", metav1.ListOptions{LabelSelector: "app in (dns,restart)"}, []string{"default/b-restart-1", "default/restart-1", "kube-system/b-dns-1", "kube-system/dns-1"}},
			{"field", "default", metav1.ListOptions{FieldSelector: "metadata.name=web-1"}, []string{"default/web-1"}},
			{"nothing", "default", metav1.ListOptions{LabelSelector: "app=none"}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				l, err := g.client.MetricsV1beta1().PodMetricses(tc.ns).List(ctx, tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				got := flattenPods(l.Items)
				if ks := keys(got); !reflect.DeepEqual(ks, tc.want) {
					t.Fatalf("got %v, want %v", ks, tc.want)
				}
				for k, v := range got {
					if !reflect.DeepEqual(v, want[k]) {
						t.Errorf("%s: got %+v, want %+v", k, v, want[k])
					}
				}
			})
		}
		l, err := g.client.MetricsV1beta1().NodeMetricses().List(ctx, metav1.ListOptions{LabelSelector: "zone=b"})
		if err != nil || len(l.Items) != 1 || l.Items[0].Name != "node-b" {
			t.Errorf("nodes zone=b: %v %+v", err, l)
		}
	})

	t.Run("get one", func(t *testing.T) {
		p, err := g.client.MetricsV1beta1().PodMetricses("default").Get(ctx, "web-1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got := flattenPods([]v1beta1.PodMetrics{*p})["default/web-1"]; !reflect.DeepEqual(got, want["default/web-1"]) {
			t.Errorf("got %+v", got)
		}
		n, err := g.client.MetricsV1beta1().NodeMetricses().Get(ctx, "node-a", metav1.GetOptions{})
		if err != nil || n.Usage.Cpu().ScaledValue(-9) != 200_000_000 {
			t.Errorf("node-a: %v %+v", err, n)
		}
	})

	t.Run("errors are Status", func(t *testing.T) {
		g.checkStatuses(t, []statusCase{
			{"/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/missing", "NotFound", 404},
			{"/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nodata-1", "NotFound", 404},
			{"/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/pending-1", "NotFound", 404},
			{"/apis/metrics.k8s.io/v1beta1/nodes/missing", "NotFound", 404},
			{"/apis/metrics.k8s.io/v1beta1/pods?labelSelector=app+in+(", "BadRequest", 400},
			{"/apis/metrics.k8s.io/v1beta1/nodes?labelSelector=%21%21", "BadRequest", 400},
			{"/apis/metrics.k8s.io/v1beta1/pods?fieldSelector=spec.nodeName%3D%3D%3D", "BadRequest", 400},
		})
	})

	t.Run("table", func(t *testing.T) {
		code, body := g.get(t, "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods", "application/json;as=Table;v=v1;g=meta.k8s.io")
		var tbl metav1.Table
		if err := json.Unmarshal(body, &tbl); err != nil || code != 200 || tbl.Kind != "Table" {
			t.Fatalf("table: %d %s", code, body)
		}
		var names []string
		for _, r := range tbl.Rows {
			names = append(names, fmt.Sprint(r.Cells[0]))
		}
		if got := strings.Join(names, ","); got != "b-restart-1,b-web-1,restart-1,web-1" {
			t.Errorf("rows %s", got)
		}
		if len(tbl.ColumnDefinitions) < 3 || tbl.ColumnDefinitions[1].Name != "cpu" {
			t.Errorf("columns %+v", tbl.ColumnDefinitions)
		}
	})

	t.Run("health", func(t *testing.T) {
		for _, p := range []string{"/livez", "/readyz", "/healthz"} {
			if code, body := g.get(t, p+"?verbose", ""); code != 200 || !strings.Contains(string(body), "storage ok") && p != "/healthz" {
				t.Errorf("%s: %d %s", p, code, body)
			}
		}
	})

	t.Run("self metrics", func(t *testing.T) {
		code, body := g.get(t, "/metrics", "")
		for _, m := range []string{"apiserver_request_total", "metrics_gateway_head_series", "metrics_gateway_storage_ready 1",
			`metrics_gateway_scrape_failures_total{job="kubelet"}`,
			"prometheus_tsdb_head_series", "prometheus_engine_queries", "go_goroutines", "process_resident_memory_bytes"} {
			if code != 200 || !strings.Contains(string(body), m) {
				t.Errorf("/metrics lacks %s", m)
			}
		}
		// A target that never failed has no series of its own.
		if strings.Contains(string(body), `target="node-a"`) {
			t.Errorf("/metrics has per-target series for the healthy node-a")
		}
	})

	t.Run("broken kubelet", func(t *testing.T) {
		kb := g.kubelet["node-b"]
		for _, mode := range []kubeletMode{kubeletGarbage, kubelet500, kubeletHang} {
			before := scrapeErrors(t, g, "node-b")
			kb.setMode(mode)
			eventually(t, 10*time.Second, fmt.Sprintf("mode %d: node-b gone", mode), func() error {
				l, err := g.client.MetricsV1beta1().PodMetricses("").List(ctx, metav1.ListOptions{})
				if err != nil {
					return err
				}
				if got := flattenPods(l.Items); !reflect.DeepEqual(got, wantPods("", base)) {
					return fmt.Errorf("pods %v", keys(got))
				}
				if _, err := g.client.MetricsV1beta1().NodeMetricses().Get(ctx, "node-b", metav1.GetOptions{}); err == nil {
					return fmt.Errorf("node-b still answered")
				}
				if e := scrapeErrors(t, g, "node-b"); e <= before {
					return fmt.Errorf("errors %v, before %v", e, before)
				}
				return nil
			})
			if _, err := g.client.MetricsV1beta1().NodeMetricses().Get(ctx, "node-a", metav1.GetOptions{}); err != nil {
				t.Errorf("mode %d: node-a: %v", mode, err)
			}
			if a := scrapeErrors(t, g, "node-a"); a != 0 {
				t.Errorf("node-a errors %v", a)
			}
		}
		if code, body := g.get(t, "/readyz", ""); code != 200 {
			t.Errorf("readyz with one bad kubelet: %d %s", code, body)
		}
	})

	t.Run("deleted pod vanishes", func(t *testing.T) {
		g.kubelet["node-a"].setRound(t, "round2.txt", fixtureT0+15000, base.Add(time.Second), "", "web-1")
		eventually(t, 10*time.Second, "web-1 gone", func() error {
			_, err := g.client.MetricsV1beta1().PodMetricses("default").Get(ctx, "web-1", metav1.GetOptions{})
			if err == nil {
				return fmt.Errorf("still answered")
			}
			return nil
		})
		if _, err := g.client.MetricsV1beta1().PodMetricses("kube-system").Get(ctx, "dns-1", metav1.GetOptions{}); err != nil {
			t.Errorf("dns-1: %v", err)
		}
	})
}

// statusCase is a request that must fail with a Kubernetes Status.
type statusCase struct {
	path, reason string
	code         int
}

// checkStatuses asserts each request is answered with a Status of the
// given reason and code.
func (g *gateway) checkStatuses(t *testing.T, cases []statusCase) {
	t.Helper()
	for _, tc := range cases {
		code, body := g.get(t, tc.path, "")
		var st metav1.Status
		if err := json.Unmarshal(body, &st); err != nil || code != tc.code || st.Kind != "Status" || string(st.Reason) != tc.reason || int(st.Code) != tc.code {
			t.Errorf("GET %s: %d %s, want %d Status %s", tc.path, code, body, tc.code, tc.reason)
		}
	}
}

var errorsLine = regexp.MustCompile(`(?m)^metrics_gateway_scrape_errors_total\{job="kubelet",target="([^"]+)"\} (\S+)$`)

// scrapeErrors reads the gateway's own error counter for a node.
func scrapeErrors(t *testing.T, g *gateway, node string) float64 {
	t.Helper()
	code, body := g.get(t, "/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, m := range errorsLine.FindAllStringSubmatch(string(body), -1) {
		if m[1] == node {
			v, _ := strconv.ParseFloat(m[2], 64)
			return v
		}
	}
	return 0
}
