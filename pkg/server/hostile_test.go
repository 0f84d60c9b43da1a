package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// TestKubeletsGetOnlyTheReadOnlyToken: with --kubelet-service-account,
// kubelets receive tokens of that ServiceAccount (from the TokenRequest
// API), renewed at four fifths of their life, and never the gateway's own
// token, which may write its Secret and patch its APIServices.
func TestKubeletsGetOnlyTheReadOnlyToken(t *testing.T) {
	const account = "kube-system/metrics-gateway-kubelet"
	g := startGateway(t, "", func(o *Options) { o.Kubelet.ServiceAccount = account })
	for name, ip := range map[string]string{"node-a": "127.0.0.2", "node-b": "127.0.0.3"} {
		k := g.kubelet[name]
		k.mu.Lock()
		k.token = account + "-"
		k.mu.Unlock()
		g.api.addNode(name, ip, k.port, nil)
	}
	// The fake issues 3s tokens: three issued mean two renewals. Scrapes
	// pick a renewed file up within pkg/scrape's reload interval (a minute,
	// against the 12 minutes left of a renewed one-hour token), which
	// TestInlineFiles covers.
	eventually(t, 20*time.Second, "kubelets scraped, and the token renewed twice", func() error {
		for name, k := range g.kubelet {
			if n := k.servedCount(); n < 3 {
				return fmt.Errorf("%s served %d scrapes", name, n)
			}
		}
		g.api.mu.Lock()
		issued := g.api.tokensIssued[account]
		g.api.mu.Unlock()
		if issued < 3 {
			return fmt.Errorf("%d tokens issued", issued)
		}
		return nil
	})
	for name, k := range g.kubelet {
		k.mu.Lock()
		for auth := range k.tokensSeen {
			if !strings.HasPrefix(auth, "Bearer "+account+"-") {
				t.Errorf("%s received %q", name, auth)
			}
		}
		k.mu.Unlock()
		if k.servedCount() == 0 {
			t.Errorf("%s served no scrape", name)
		}
	}
}

// TestShutdownWithinBudget: requests that never finish (clients that send
// half their body), on the secure port and on the plain-HTTP query
// listener, hold each drain to its timeout, and the drains run side by side:
// the gateway returns after about one request timeout, not their sum (it was
// the apiserver's 60s, then 45s for each loopback listener, over the pod's
// 60s grace period). The storage then opens again.
func TestShutdownWithinBudget(t *testing.T) {
	const requestTimeout = 8 * time.Second
	dir := t.TempDir()
	insecure := freeLoopback(t)
	g := startGateway(t, dir, func(o *Options) {
		o.GenericServerRunOptions.RequestTimeout = requestTimeout
		o.QueryAPI.InsecureBindAddress = insecure
	})
	eventually(t, 20*time.Second, "serving", func() error {
		if code, body := g.get(t, "/livez", ""); code != http.StatusOK {
			return fmt.Errorf("livez %d %s", code, body)
		}
		return nil
	})
	secure, err := tls.Dial("tcp", strings.TrimPrefix(g.url, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer secure.Close()
	plain, err := net.Dial("tcp", insecure)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	// Half a query each: the handlers wait for the rest of the body.
	for _, c := range []net.Conn{secure, plain} {
		fmt.Fprintf(c, "POST %s/api/v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nquery=up", PrometheusPrefix)
	}
	time.Sleep(time.Second)
	start := time.Now()
	g.cancel()
	g.cancel = nil
	budget := requestTimeout + 7*time.Second
	select {
	case err := <-g.done:
		t.Logf("returned %v after the stop (request timeout %v): %v", time.Since(start).Round(time.Millisecond), requestTimeout, err)
	case <-time.After(budget):
		t.Fatalf("still running %v after the stop: the drains add up", budget)
	}
	g2 := startGateway(t, dir)
	eventually(t, 20*time.Second, "serving after the restart", func() error {
		if code, body := g2.get(t, "/livez", ""); code != http.StatusOK {
			return fmt.Errorf("livez %d %s", code, body)
		}
		return nil
	})
}

// TestQueryAPIAbuseLeavesMetricsAPIsAnswering: eight clients loop on
// queries that each hit --query-max-samples, two more list every series and
// post 10 MB expressions, all at once, while kubectl top's request (list
// every PodMetrics) is sent a hundred times. The abuse gets 422, 413 or 503
// and never holds memory; every metrics.k8s.io request is answered (it has
// its own evaluation slots). Its latency is logged, not asserted (timing
// belongs to benchmarks): 169 ms p50 and 527 ms p99 without -race on 2
// cores, in the run the closing note of issue 14 reports.
func TestQueryAPIAbuseLeavesMetricsAPIsAnswering(t *testing.T) {
	g := startGateway(t, "", func(o *Options) { o.QueryMaxSamples = 5_000 })
	g.api.addNode("node-a", "127.0.0.2", g.kubelet["node-a"].port, nil)
	g.api.addNode("node-b", "127.0.0.3", g.kubelet["node-b"].port, nil)
	addFixturePods(g.api, "")
	addFixturePods(g.api, "b-")
	g.replayRounds(t, time.Now().Add(-5*time.Second).Truncate(time.Second))
	ctx := context.Background()
	eventually(t, 10*time.Second, "pods answered", func() error {
		l, err := g.client.MetricsV1beta1().PodMetricses("").List(ctx, metav1.ListOptions{})
		if err == nil && len(l.Items) == 0 {
			err = errors.New("no pods")
		}
		return err
	})
	base := g.url + PrometheusPrefix
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	abuse := func(method, path string, form url.Values) {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			code, _ := apiRequest(t, base, method, path, form, "")
			mu.Lock()
			codes[code]++
			mu.Unlock()
		}
	}
	heavy := url.Values{"query": {`count_over_time({__name__=~".+"}[1h])`}}
	for range 8 {
		wg.Add(1)
		go abuse(http.MethodPost, "/api/v1/query", heavy)
	}
	wg.Add(2)
	go abuse(http.MethodPost, "/api/v1/series", url.Values{"match[]": {`{__name__=~".+"}`}})
	go abuse(http.MethodPost, "/api/v1/query", url.Values{"query": {strings.Repeat("(", 10<<20)}})
	var lat []time.Duration
	for range 100 {
		start := time.Now()
		if _, err := g.client.MetricsV1beta1().PodMetricses("").List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("list PodMetrics under abuse: %v", err)
		}
		lat = append(lat, time.Since(start))
		time.Sleep(20 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	t.Logf("metrics.k8s.io list-all under abuse: p50 %v, p99 %v, max %v; abuse answers by code %v", p50, p99, lat[len(lat)-1], codes)
	for code, n := range codes {
		if code != http.StatusOK && code != http.StatusRequestEntityTooLarge && code != http.StatusUnprocessableEntity && code != http.StatusServiceUnavailable {
			t.Errorf("%d abusive requests answered %d", n, code)
		}
	}
	if codes[http.StatusUnprocessableEntity] == 0 || codes[http.StatusRequestEntityTooLarge] == 0 {
		t.Errorf("abuse answers %v: want 422s (max samples) and 413s (10 MB expression)", codes)
	}
}
