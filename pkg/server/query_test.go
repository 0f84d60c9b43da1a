package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	promapi "github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// promClient is the Prometheus Go client, as Grafana and client_golang
// users reach the gateway, with a bearer token when token is not empty.
func promClient(t *testing.T, address, token string) promv1.API {
	t.Helper()
	var rt http.RoundTripper = insecureClient().Transport
	if token != "" {
		rt = bearer{token: token, next: rt}
	}
	c, err := promapi.NewClient(promapi.Config{Address: address, RoundTripper: rt})
	if err != nil {
		t.Fatal(err)
	}
	return promv1.NewAPI(c)
}

type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// TestGatewayServesPrometheusAPI reads what the pod job and the kubelet job
// stored through the Prometheus API with the official Go client.
func TestGatewayServesPrometheusAPI(t *testing.T) {
	g, _ := customGateway(t, "")
	g.api.addNode("node-a", "127.0.0.2", g.kubelet["node-a"].port, nil)
	g.api.addNode("node-b", "127.0.0.3", g.kubelet["node-b"].port, nil)
	g.replayRounds(t, time.Now().Add(-5*time.Second).Truncate(time.Second))
	api := promClient(t, g.url+PrometheusPrefix, "")
	ctx := context.Background()

	// Every job has scraped: kubelets, annotated pods, the gateway itself.
	eventually(t, 30*time.Second, "every job scraped", func() error {
		v, _, _, err := api.Query(ctx, `count by (job) (up == 1)`, time.Now())
		if err != nil {
			return err
		}
		got := map[string]float64{}
		for _, s := range v.(model.Vector) {
			got[string(s.Metric["job"])] = float64(s.Value)
		}
		want := map[string]float64{"kubelet": 2, "kubernetes-pods": 4, "metrics-gateway": 1}
		for job, n := range want {
			if got[job] != n {
				return fmt.Errorf("targets up by job %v, want %v", got, want)
			}
		}
		return nil
	})

	t.Run("query", func(t *testing.T) {
		eventually(t, 10*time.Second, "rate over 5s", func() error {
			v, warn, _, err := api.Query(ctx, `rate(http_requests_total{pod="web-1"}[5s])`, time.Now())
			if err != nil || len(warn) > 0 {
				return fmt.Errorf("%v %v", err, warn)
			}
			vec := v.(model.Vector)
			if len(vec) != 1 {
				return fmt.Errorf("%d series: %v", len(vec), vec)
			}
			m := vec[0].Metric
			if m["namespace"] != "default" || m["job"] != "kubernetes-pods" || m["code"] != "200" {
				return fmt.Errorf("labels %v", m)
			}
			if r := float64(vec[0].Value); math.Abs(r-10) > 0.5 {
				return fmt.Errorf("rate %v, want 10±5%%", r)
			}
			return nil
		})
		v, _, _, err := api.Query(ctx, `sum(metrics_gateway_head_series{job="metrics-gateway"})`, time.Now())
		if err != nil || len(v.(model.Vector)) != 1 || v.(model.Vector)[0].Value <= 0 {
			t.Errorf("the gateway's own head series, scraped by itself: %v %v", v, err)
		}
	})

	t.Run("query_range", func(t *testing.T) {
		end := time.Now()
		v, _, _, err := api.QueryRange(ctx, `queue_depth{namespace="default"}`, promv1.Range{Start: end.Add(-4 * time.Second), End: end, Step: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		m := v.(model.Matrix)
		if len(m) != 3 {
			t.Fatalf("%d series, want 3: %v", len(m), m)
		}
		for _, s := range m {
			if len(s.Values) != 5 {
				t.Errorf("%s: %d points, want 5", s.Metric, len(s.Values))
			}
			for _, p := range s.Values {
				if p.Value != 7 {
					t.Errorf("%s: %v at %v, want 7", s.Metric, p.Value, p.Timestamp)
				}
			}
		}
	})

	t.Run("series", func(t *testing.T) {
		ss, _, _, err := api.Series(ctx, []string{`queue_depth`, `node_cpu_usage_seconds_total`}, time.Now().Add(-time.Minute), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range ss {
			got = append(got, string(s["__name__"])+"/"+string(s["pod"])+string(s["node"]))
		}
		slices.Sort(got)
		want := []string{"node_cpu_usage_seconds_total/node-a", "node_cpu_usage_seconds_total/node-b", "queue_depth/kube-1", "queue_depth/other-1", "queue_depth/web-1", "queue_depth/web-2"}
		if !slices.Equal(got, want) {
			t.Errorf("series %v, want %v", got, want)
		}
	})

	t.Run("labels", func(t *testing.T) {
		names, _, _, err := api.LabelNames(ctx, nil, time.Now().Add(-time.Minute), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []model.LabelName{"__name__", "container", "instance", "job", "namespace", "node", "pod"} {
			if !slices.Contains(names, want) {
				t.Errorf("label names %v lack %s", names, want)
			}
		}
		jobs, _, _, err := api.LabelValues(ctx, "job", nil, time.Now().Add(-time.Minute), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(jobs); got != "[kubelet kubernetes-pods metrics-gateway]" {
			t.Errorf("job values %s", got)
		}
		pods, _, _, err := api.LabelValues(ctx, "pod", []string{`queue_depth{namespace="kube-system"}`}, time.Now().Add(-time.Minute), time.Now())
		if err != nil || fmt.Sprint(pods) != "[kube-1]" {
			t.Errorf("pod values of a match[]: %v %v", pods, err)
		}
	})

	t.Run("metadata", func(t *testing.T) {
		md, err := api.Metadata(ctx, "", "")
		if err != nil {
			t.Fatal(err)
		}
		for name, typ := range map[string]promv1.MetricType{
			"http_requests_total":               promv1.MetricTypeCounter,
			"queue_depth":                       promv1.MetricTypeGauge,
			"container_cpu_usage_seconds_total": promv1.MetricTypeCounter,
			"metrics_gateway_head_series":       promv1.MetricTypeGauge,
		} {
			if len(md[name]) == 0 || md[name][0].Type != typ {
				t.Errorf("metadata of %s: %v, want type %s", name, md[name], typ)
			}
		}
	})

	t.Run("buildinfo", func(t *testing.T) {
		bi, err := api.Buildinfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(`^3\.\d+\.\d+$`).MatchString(bi.Version) || bi.Revision != Version {
			t.Errorf("buildinfo %+v: want the Prometheus 3 release served and revision %q", bi, Version)
		}
	})

	t.Run("bad PromQL is 400 bad_data", func(t *testing.T) {
		_, _, _, err := api.Query(ctx, `sum(`, time.Now())
		var perr *promv1.Error
		if !errors.As(err, &perr) || perr.Type != promv1.ErrBadData {
			t.Errorf("query sum(: %v, want bad_data", err)
		}
		checkAPIError(t, g.url, http.MethodGet, "/prometheus/api/v1/query?query="+url.QueryEscape("rate(up)"), nil, "", http.StatusBadRequest, "bad_data")
		checkAPIError(t, g.url, http.MethodPost, "/prometheus/api/v1/query_range", url.Values{"query": {"up"}, "start": {"10"}, "end": {"0"}, "step": {"1"}}, "", http.StatusBadRequest, "bad_data")
	})

	t.Run("timeout is 503 timeout", func(t *testing.T) {
		// 86,400 subquery steps, each evaluated (time() is not step
		// invariant) and each checking the deadline, cannot finish in a
		// millisecond. A selector would not do: the engine skips the steps
		// before a series' first sample, and the few minutes of samples
		// here took about a millisecond, so the query sometimes finished.
		// client_golang reports any 503 as a server error; the body has
		// Prometheus' error type.
		_, _, _, err := api.Query(ctx, `count_over_time(vector(time())[1d:1s])`, time.Now(), promv1.WithTimeout(time.Millisecond))
		var perr *promv1.Error
		if !errors.As(err, &perr) || perr.Type != promv1.ErrServer || !strings.Contains(perr.Detail, `"errorType":"timeout"`) {
			t.Errorf("slow query with a 1ms timeout: %v, want a 503 with errorType timeout", err)
		}
		slow := "count_over_time(vector(time())[1d:1s])"
		checkAPIError(t, g.url, http.MethodPost, "/prometheus/api/v1/query", url.Values{"query": {slow}, "timeout": {"1ms"}}, "", http.StatusServiceUnavailable, "timeout")
		// In the URL, timeout is Prometheus' parameter, not the apiserver's
		// request deadline (which would answer a Kubernetes 504).
		checkAPIError(t, g.url, http.MethodGet, "/prometheus/api/v1/query?timeout=1ms&query="+url.QueryEscape(slow), nil, "", http.StatusServiceUnavailable, "timeout")
	})

	t.Run("GET and POST form", func(t *testing.T) {
		for _, c := range []struct{ method, path string }{
			{http.MethodGet, "/prometheus/api/v1/query?query=up"},
			{http.MethodPost, "/prometheus/api/v1/query"},
			{http.MethodGet, "/prometheus/api/v1/query_range?query=up&start=0&end=60&step=15"},
			{http.MethodPost, "/prometheus/api/v1/query_range"},
			{http.MethodPost, "/prometheus/api/v1/series"},
			{http.MethodPost, "/prometheus/api/v1/labels"},
		} {
			form := url.Values{"query": {"up"}, "start": {"0"}, "end": {"60"}, "step": {"15"}, "match[]": {"up"}}
			if c.method == http.MethodGet {
				form = nil
			}
			code, body := apiRequest(t, g.url, c.method, c.path, form, "")
			if code != http.StatusOK || !strings.HasPrefix(string(body), `{"status":"success"`) {
				t.Errorf("%s %s: %d %s", c.method, c.path, code, body)
			}
		}
	})

	t.Run("bare /api/v1 points to the prefix", func(t *testing.T) {
		checkAPIError(t, g.url, http.MethodGet, "/api/v1/query?query=up", nil, "", http.StatusNotFound, "not_found")
	})

	t.Run("writes and admin are not served", func(t *testing.T) {
		for _, p := range []string{"/prometheus/api/v1/write", "/prometheus/api/v1/admin/tsdb/snapshot", "/prometheus/api/v1/admin/tsdb/delete_series", "/prometheus/api/v1/read", "/prometheus/api/v1/otlp/v1/metrics"} {
			checkAPIError(t, g.url, http.MethodPost, p, url.Values{}, "", http.StatusNotFound, "not_found")
		}
		for _, p := range []string{"/prometheus/api/v1/features", "/prometheus/api/v1/search/metric_names", "/prometheus/api/v1/openapi.yaml", "/prometheus/api/v1/notifications/live"} {
			checkAPIError(t, g.url, http.MethodGet, p, nil, "", http.StatusNotFound, "not_found")
		}
	})

	// Every other endpoint Prometheus registers answers, and none fails:
	// the API is built with some of its parts empty (no rules, no
	// alertmanagers, no exemplars), and a nil one would panic here.
	t.Run("every served endpoint answers", func(t *testing.T) {
		for _, p := range []string{
			"/query_exemplars?query=up", "/format_query?query=up", "/parse_query?query=up",
			"/targets", "/targets?state=dropped", "/targets/metadata?metric=up", "/targets/relabel_steps?scrapePool=kubelet&labels=%7B%7D",
			"/scrape_pools", "/scrape_pools/config?scrapePool=kubelet", "/alertmanagers", "/alerts", "/rules", "/notifications",
			"/status/config", "/status/flags", "/status/runtimeinfo", "/status/tsdb", "/status/tsdb/blocks", "/status/walreplay", "/status/self_metrics",
		} {
			code, body := apiRequest(t, g.url, http.MethodGet, "/prometheus/api/v1"+p, nil, "")
			if code >= 500 || code == http.StatusNotFound {
				t.Errorf("GET %s: %d %.300s", p, code, body)
			}
		}
		code, body := apiRequest(t, g.url, http.MethodGet, "/prometheus/api/v1/status/config", nil, "")
		var cfg struct{ Data struct{ YAML string } }
		if err := json.Unmarshal(body, &cfg); err != nil || code != http.StatusOK || !strings.Contains(cfg.Data.YAML, "credentials: <secret>") || strings.Contains(cfg.Data.YAML, "test-token") {
			t.Errorf("status/config must mask the kubelet token: %d %s", code, body)
		}
	})

	// The gateway's own job stores every HPA each round (pkg/autoscaling):
	// a change of the HPA's status is a new sample of the same series.
	t.Run("HorizontalPodAutoscalers recorded", func(t *testing.T) {
		hpa := autoscalingv2.HorizontalPodAutoscaler{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web"},
			Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
				ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
				MaxReplicas:    10,
				Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "http_requests"},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(resource.MustParse("10"))}}}},
			},
			Status: autoscalingv2.HorizontalPodAutoscalerStatus{CurrentReplicas: 2, DesiredReplicas: 3},
		}
		g.api.addHPA(hpa)
		desired := func(want float64) func() error {
			return func() error {
				v, _, _, err := api.Query(ctx, `kube_horizontalpodautoscaler_status_desired_replicas{job="metrics-gateway",namespace="default",horizontalpodautoscaler="web"}`, time.Now())
				if err != nil {
					return err
				}
				if vec := v.(model.Vector); len(vec) != 1 || float64(vec[0].Value) != want {
					return fmt.Errorf("desired replicas %v, want %v", vec, want)
				}
				return nil
			}
		}
		eventually(t, 15*time.Second, "desired replicas 3 stored", desired(3))
		hpa.Status.CurrentReplicas, hpa.Status.DesiredReplicas = 3, 4
		g.api.addHPA(hpa)
		eventually(t, 15*time.Second, "desired replicas 4 stored", desired(4))
		v, _, _, err := api.Query(ctx, `max_over_time(kube_horizontalpodautoscaler_spec_target_metric{horizontalpodautoscaler="web",metric_name="http_requests",metric_target_type="average"}[1m])`, time.Now())
		if err != nil || v.(model.Vector).Len() != 1 || float64(v.(model.Vector)[0].Value) != 10 {
			t.Errorf("target of http_requests: %v %v, want 10", v, err)
		}
		v, _, _, err = api.Query(ctx, `min_over_time(kube_horizontalpodautoscaler_status_desired_replicas{horizontalpodautoscaler="web"}[1m])`, time.Now())
		if err != nil || v.(model.Vector).Len() != 1 || float64(v.(model.Vector)[0].Value) != 3 {
			t.Errorf("history of desired replicas: %v %v, want the earlier 3 kept", v, err)
		}
	})

	// The page and the explain endpoint (pkg/web) on the secure port: the
	// fake API server serves no scale subresource, so the replay cannot
	// run, and the page says why instead of failing.
	t.Run("autoscaling page and explain endpoint", func(t *testing.T) {
		for _, c := range []struct {
			path string
			code int
			want string
		}{
			{"/ui/", http.StatusOK, `href="/ui/hpa/default/web"`},
			{"/ui/hpa/default/web", http.StatusOK, `id="chart-replicas"`},
			{"/ui/hpa/default/web", http.StatusOK, `cannot explain`},
			{"/ui/hpa/default/web?range=5m", http.StatusOK, `</i>desired (controller) 4`},
			{"/ui/hpa/default/web?range=forever", http.StatusBadRequest, `want a duration`},
			{"/ui/hpa/default/none", http.StatusNotFound, `not found`},
			{"/ui/graph?range=5m&expr=" + url.QueryEscape(`up{job="metrics-gateway"}`), http.StatusOK, `<polyline`},
			{"/ui/graph?expr=" + url.QueryEscape("sum("), http.StatusOK, `class="err"`},
			{"/explain/hpa/default/none", http.StatusNotFound, `"kind":"Status"`},
			{"/explain/hpa/default/web?at=yesterday", http.StatusBadRequest, `RFC 3339`},
			{"/explain/hpa/default/web?at=" + time.Now().Add(time.Hour).Format(time.RFC3339), http.StatusBadRequest, `in the future`},
			{"/explain/hpa/default/web", http.StatusInternalServerError, `scale of Deployment web`},
		} {
			code, body := g.get(t, c.path, "")
			if code != c.code || !strings.Contains(string(body), c.want) {
				t.Errorf("GET %s: %d %s, want %d with %q", c.path, code, body, c.code, c.want)
			}
		}
	})

	t.Run("self-metrics count requests", func(t *testing.T) {
		checkAPIError(t, g.url, http.MethodGet, "/prometheus/api/v1/query?query="+url.QueryEscape("sum("), nil, "", http.StatusBadRequest, "bad_data")
		code, body := g.get(t, "/metrics", "")
		if code != http.StatusOK || !strings.Contains(string(body), `metrics_gateway_query_api_requests_total{code="400",handler="/query"}`) {
			t.Errorf("/metrics lacks the 400s of /query: %d", code)
		}
	})
}

// apiRequest sends a request, form-encoded when form is not nil.
func apiRequest(t *testing.T, base, method, path string, form url.Values, token string) (int, []byte) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, base+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := insecureClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// checkAPIError asserts the Prometheus API error shape and code.
func checkAPIError(t *testing.T, base, method, path string, form url.Values, token string, code int, errType string) {
	t.Helper()
	got, body := apiRequest(t, base, method, path, form, token)
	var e struct{ Status, ErrorType, Error string }
	if err := json.Unmarshal(body, &e); err != nil || got != code || e.Status != "error" || e.ErrorType != errType || e.Error == "" {
		t.Errorf("%s %s: %d %s, want %d %s", method, path, got, body, code, errType)
	}
}

// TestQueryAPIAuth runs the gateway with delegated authentication and
// authorization (TokenReview and SubjectAccessReview answered by the fake
// API server) and checks every endpoint: no or a bad token is 401, a user
// without the non-resource rule is 403, a user with it is 200.
func TestQueryAPIAuth(t *testing.T) {
	insecureAddr := freeLoopback(t)
	g := startGateway(t, "", func(o *Options) {
		o.DisableAuthForTesting = false
		o.Authentication.SkipInClusterLookup = true
		o.QueryAPI.InsecureBindAddress = insecureAddr
		o.QueryMaxSamples = 1000
	})
	eventually(t, 20*time.Second, "gateway serving", func() error {
		if code, _ := g.get(t, "/readyz", ""); code != http.StatusOK {
			return fmt.Errorf("readyz %d", code)
		}
		return nil
	})
	now, hourAgo := fmt.Sprint(time.Now().Unix()), fmt.Sprint(time.Now().Add(-time.Hour).Unix())
	endpoints := []struct {
		method, path string
		form         url.Values
	}{
		{http.MethodGet, "/prometheus/api/v1/query?query=up", nil},
		{http.MethodPost, "/prometheus/api/v1/query", url.Values{"query": {"up"}}},
		{http.MethodGet, "/prometheus/api/v1/query_range?query=up&start=" + hourAgo + "&end=" + now + "&step=60", nil},
		{http.MethodPost, "/prometheus/api/v1/query_range", url.Values{"query": {"up"}, "start": {hourAgo}, "end": {now}, "step": {"60"}}},
		{http.MethodGet, "/prometheus/api/v1/series?match[]=up", nil},
		{http.MethodPost, "/prometheus/api/v1/series", url.Values{"match[]": {"up"}}},
		{http.MethodGet, "/prometheus/api/v1/labels", nil},
		{http.MethodPost, "/prometheus/api/v1/labels", url.Values{}},
		{http.MethodGet, "/prometheus/api/v1/label/job/values", nil},
		{http.MethodGet, "/prometheus/api/v1/metadata", nil},
		{http.MethodGet, "/prometheus/api/v1/status/buildinfo", nil},
		// The autoscaling page (pkg/web), the same way.
		{http.MethodGet, "/ui/", nil},
		{http.MethodGet, "/ui/graph?expr=up", nil},
	}
	for _, e := range endpoints {
		for _, c := range []struct {
			token string
			code  int
		}{{"", http.StatusUnauthorized}, {"not-a-token", http.StatusUnauthorized}, {nobodyToken, http.StatusForbidden}, {readerToken, http.StatusOK}} {
			got, body := apiRequest(t, g.url, e.method, e.path, e.form, c.token)
			if got != c.code {
				t.Errorf("%s %s with token %q: %d %s, want %d", e.method, e.path, c.token, got, body, c.code)
			}
		}
	}
	// Authorized as non-resource URLs: RBAC's nonResourceURLs apply.
	g.api.mu.Lock()
	var paths []string
	for _, r := range g.api.reviews {
		if r.User == readerToken && r.NonResourceAttributes != nil {
			paths = append(paths, r.NonResourceAttributes.Verb+" "+r.NonResourceAttributes.Path)
		}
		if r.ResourceAttributes != nil && r.ResourceAttributes.Resource == "prometheus" {
			t.Errorf("the query API authorized as a resource: %+v", r.ResourceAttributes)
		}
	}
	g.api.mu.Unlock()
	for _, want := range []string{"get /prometheus/api/v1/query", "post /prometheus/api/v1/query_range", "get /prometheus/api/v1/label/job/values", "get /ui/graph"} {
		if !slices.Contains(paths, want) {
			t.Errorf("no SubjectAccessReview for %q among %v", want, paths)
		}
	}
	// Kubelet probes stay anonymous; the metrics APIs do not.
	for path, code := range map[string]int{"/livez": http.StatusOK, "/readyz": http.StatusOK, "/apis/metrics.k8s.io/v1beta1/nodes": http.StatusUnauthorized, "/metrics": http.StatusUnauthorized} {
		if got, body := apiRequest(t, g.url, http.MethodGet, path, nil, ""); got != code {
			t.Errorf("anonymous GET %s: %d %s, want %d", path, got, body, code)
		}
	}

	// The opt-in plain-HTTP listener serves the API alone, without
	// authentication, on loopback.
	base := "http://" + insecureAddr
	for path, code := range map[string]int{"/api/v1/query?query=up": http.StatusOK, "/prometheus/api/v1/query?query=up": http.StatusOK, "/api/v1/status/buildinfo": http.StatusOK, "/apis/metrics.k8s.io/v1beta1/nodes": http.StatusNotFound, "/metrics": http.StatusNotFound} {
		if got, body := apiRequest(t, base, http.MethodGet, path, nil, ""); got != code {
			t.Errorf("plain HTTP GET %s: %d %s, want %d", path, got, body, code)
		}
	}
	checkAPIError(t, base, http.MethodPost, "/api/v1/write", url.Values{}, "", http.StatusNotFound, "not_found")

	// --query-max-samples holds through the API: 3,601 subquery points at
	// once is over 1,000, an execution error (422) in Prometheus' terms.
	checkAPIError(t, base, http.MethodGet, "/api/v1/query?query="+url.QueryEscape("count_over_time(vector(1)[1h:1s])"), nil, "", http.StatusUnprocessableEntity, "execution")

	// A name that resolves to loopback (DNS rebinding) is refused.
	req, _ := http.NewRequest(http.MethodGet, base+"/api/v1/query?query=up", nil)
	req.Host = "rebound.example:9090"
	if resp, err := insecureClient().Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("plain HTTP with Host rebound.example: %v %v, want 403", resp, err)
	} else {
		resp.Body.Close()
	}

	// Path tricks are authorized as the path they are served as.
	for _, p := range []string{"//prometheus/api/v1/query?query=up", "/prometheus//api/v1/query?query=up", "/prometheus/api%2Fv1/query?query=up", "/prometheus/api/v1/../v1/query?query=up", "/api/v1/query?query=up"} {
		if code, body := apiRequest(t, g.url, http.MethodGet, p, nil, nobodyToken); code == http.StatusOK {
			t.Errorf("GET %s as nobody: %d %.200s", p, code, body)
		}
	}
}

// freeLoopback returns a loopback address with a port free right now.
func freeLoopback(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}
