package server

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// canary counts the requests it receives, and the credentials they carry.
type canary struct {
	url string

	mu       sync.Mutex
	requests int
	tokens   int
}

func newCanary(t testing.TB, ip string) *canary {
	c := &canary{}
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatalf("listen on %s: %v", ip, err)
	}
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.requests++
		if r.Header.Get("Authorization") != "" {
			c.tokens++
		}
		c.mu.Unlock()
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprintln(w, "# TYPE internal_secret gauge\ninternal_secret 1")
	})}}
	srv.Start()
	t.Cleanup(srv.Close)
	c.url = srv.URL + "/metrics"
	return c
}

func (c *canary) counts() (requests, tokens int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.requests, c.tokens
}

// TestScrapesDoNotFollowRedirects: an annotated pod, and a kubelet, that
// answer every scrape with a 302 to an internal server make the gateway
// fetch nothing from it. Prometheus follows redirects by default, and its
// authorization round tripper would have sent the kubelet token along.
func TestScrapesDoNotFollowRedirects(t *testing.T) {
	g, _ := customGateway(t, "")
	c := newCanary(t, "127.0.0.8")
	evil := newFakePod(t, "default", "evil-1", "127.0.0.9", 1)
	evil.mu.Lock()
	evil.redirectTo = c.url
	evil.mu.Unlock()
	evil.register(g.api, map[string]string{"app": "evil"})
	k := g.kubelet["node-a"]
	g.api.addNode("node-a", k.ip, k.port, nil)
	k.mu.Lock()
	k.redirectTo = c.url
	k.mode = kubeletRedirect
	base := k.served
	k.mu.Unlock()
	eventually(t, 30*time.Second, "three scrapes of the redirecting pod and kubelet", func() error {
		evil.mu.Lock()
		pod := evil.served
		evil.mu.Unlock()
		if kubelet := k.servedCount() - base; pod < 3 || kubelet < 3 {
			return fmt.Errorf("pod scraped %d times, kubelet %d", pod, kubelet)
		}
		return nil
	})
	if requests, tokens := c.counts(); requests > 0 {
		t.Errorf("the canary received %d requests (%d with a bearer token)", requests, tokens)
	}
}

// TestQueryAPIAbuseIsRefused runs the query API with a small answer cap and
// checks, through the whole handler chain, that "series over everything" is
// truncated with Prometheus' warning, and that a 10 MB expression and a
// deeply nested one are refused before they are parsed.
func TestQueryAPIAbuseIsRefused(t *testing.T) {
	g := startGateway(t, "", func(o *Options) { o.QueryAPI.Limits.MaxResults = 3 })
	g.api.addNode("node-a", "127.0.0.2", g.kubelet["node-a"].port, nil)
	g.api.addNode("node-b", "127.0.0.3", g.kubelet["node-b"].port, nil)
	g.replayRounds(t, time.Now().Add(-5*time.Second).Truncate(time.Second))
	base := g.url + PrometheusPrefix
	var answer struct {
		Status   string
		Data     []map[string]string
		Warnings []string
	}
	eventually(t, 30*time.Second, "series over everything, truncated", func() error {
		code, body := apiRequest(t, base, http.MethodPost, "/api/v1/series", url.Values{"match[]": {`{__name__=~".+"}`}}, "")
		if code != http.StatusOK {
			return fmt.Errorf("%d %s", code, body)
		}
		if err := json.Unmarshal(body, &answer); err != nil {
			return err
		}
		if len(answer.Data) != 3 || len(answer.Warnings) == 0 || !strings.Contains(answer.Warnings[0], "truncated") {
			return fmt.Errorf("%d series, warnings %q; want 3 and a truncation warning", len(answer.Data), answer.Warnings)
		}
		return nil
	})
	checkAPIError(t, base, http.MethodPost, "/api/v1/query", url.Values{"query": {strings.Repeat("(", 10<<20)}}, "", http.StatusRequestEntityTooLarge, "bad_data")
	checkAPIError(t, base, http.MethodPost, "/api/v1/query", url.Values{"query": {strings.Repeat("(", 1000) + "1" + strings.Repeat(")", 1000)}}, "", http.StatusBadRequest, "bad_data")
	checkAPIError(t, base, http.MethodGet, "/api/v1/query_range?query="+strings.Repeat("-", 100<<10)+"1&start=0&end=1&step=1", nil, "", http.StatusBadRequest, "bad_data")
}
