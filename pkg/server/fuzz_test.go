package server

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"testing"
	"time"
)

// metricsAPIPrefixes are the three metrics APIs the fuzzer addresses.
var metricsAPIPrefixes = []string{
	"/apis/metrics.k8s.io/v1beta1/",
	"/apis/custom.metrics.k8s.io/v1beta1/",
	"/apis/custom.metrics.k8s.io/v1beta2/",
	"/apis/external.metrics.k8s.io/v1beta1/",
}

// FuzzMetricsAPIs sends arbitrary paths and query strings to the metrics
// APIs of a running gateway that holds pod and kubelet series. Whatever a
// client sends, the answer is never a 5xx: a server error must mean the
// server failed, and a request is not a server failure. The seeds are the
// requests HPAs and kubectl send, plus the ones that answered 500 before
// (a Kubernetes label key in metricLabelSelector).
//
//	go test -run '^$' -fuzz FuzzMetricsAPIs -fuzztime 2m ./pkg/server/
func FuzzMetricsAPIs(f *testing.F) {
	for _, s := range []struct {
		api         uint8
		path, query string
	}{
		{0, "pods", ""},
		{0, "namespaces/default/pods", "labelSelector=app%3Dweb"},
		{0, "namespaces/default/pods/web-1", ""},
		{0, "nodes", "labelSelector=kubernetes.io%2Fos%3Dlinux"},
		{0, "nodes/node-a", ""},
		{0, "pods", "fieldSelector=metadata.name%3Dx"},
		{1, "namespaces/default/pods/%2A/http_requests", "labelSelector=app%3Dweb"},
		{2, "namespaces/default/pods/web-1/http_requests", "metricLabelSelector=app.kubernetes.io%2Fname%3Dweb"},
		{2, "namespaces/default/pods/%2A/queue_depth", "metricLabelSelector=a+in+%28x%2Cy%29&labelSelector=app+notin+%28db%29"},
		{2, "namespaces/default/pods/%2A/queue_depth", "metricLabelSelector=code%3E400"},
		{2, "namespaces/default/pods/%2A/queue_depth", "metricLabelSelector=%28%28%28"},
		{2, "namespaces/default/metrics/queue_depth", ""},
		{2, "", ""},
		{3, "namespaces/default/queue_depth", "labelSelector=app.kubernetes.io%2Fname%3Dweb"},
		{3, "namespaces/default/nope", ""},
	} {
		f.Add(s.api, s.path, s.query)
	}
	g, _ := customGateway(f, "")
	eventually(f, 30*time.Second, "queue_depth served", func() error {
		code, body := g.get(f, metricsAPIPrefixes[2]+"namespaces/default/pods/web-1/queue_depth", "")
		if code != http.StatusOK {
			return fmt.Errorf("status %d: %s", code, body)
		}
		return nil
	})
	client := insecureClient()
	f.Fuzz(func(t *testing.T, api uint8, path, query string) {
		u, err := url.Parse(g.url + metricsAPIPrefixes[int(api)%len(metricsAPIPrefixes)] + path)
		if err != nil || u.Host != g.url[len("https://"):] {
			return
		}
		u.RawQuery = query
		req, err := http.NewRequest(http.MethodGet, u.String(), nil)
		if err != nil {
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("GET %s: %d %s", u, resp.StatusCode, body)
		}
	})
}
