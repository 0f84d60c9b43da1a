package scrape

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// Through Prometheus' own scrape loop and the real TSDB: once the head is
// full, a target's new series are dropped one by one while its existing
// series are still stored and its scrape still succeeds.
func TestSeriesCapInScrapeLoop(t *testing.T) {
	var mu sync.Mutex
	body := "a 1\nb 1\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprint(w, body)
	}))
	defer srv.Close()
	// Two data series and the five report series of the one target.
	const max = 7
	store, app, _ := scrapeCapped(t, max, srv.URL, "")

	latest := func(expr string) (float64, bool) {
		v, err := store.Instant(context.Background(), expr, time.Now(), storage.QueryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		vec, ok := v.(promql.Vector)
		if !ok || len(vec) != 1 {
			return 0, false
		}
		return vec[0].F, true
	}
	waitFor(t, "both series stored", func() bool { v, ok := latest("b"); return ok && v == 1 })
	if n := store.HeadSeries(); n != max {
		t.Fatalf("head holds %d series, want %d", n, max)
	}

	mu.Lock()
	body = "a 2\nb 2\nc 2\n"
	mu.Unlock()
	waitFor(t, "existing series updated", func() bool { v, ok := latest("a"); return ok && v == 2 })
	waitFor(t, "a rejection counted", func() bool { return testutil.ToFloat64(app.(*seriesCap).rejected) > 0 })
	if _, ok := latest("c"); ok {
		t.Error("new series c stored over the cap")
	}
	if v, ok := latest(`up{job="app"}`); !ok || v != 1 {
		t.Errorf("up = %v (found %v), want the scrape to succeed", v, ok)
	}
	if n := store.HeadSeries(); n != max {
		t.Errorf("head holds %d series, want %d", n, max)
	}
}

// Through the real scrape loop and TSDB: a target over its sample_limit
// with fresh ids every scrape fails every scrape and adds no series to the
// head (prometheus/prometheus#16427 without the deferral).
func TestFailedScrapesCreateNoSeries(t *testing.T) {
	url, scrapes := churnTarget(t, 200)
	store, _, _ := scrapeCapped(t, 1_000_000, url, "  sample_limit: 100\n")
	waitFor(t, "ten failed scrapes", func() bool { return scrapes() >= 10 })
	// Only the target's five report series (up, scrape_*) exist; before
	// the deferral each failed scrape left 100 empty series.
	if n := store.HeadSeries(); n > 5 {
		t.Errorf("head holds %d series after failed scrapes, want only the 5 report series", n)
	}
}

// Through the real scrape loop: a target with fresh ids every scrape, over
// its sample_limit, leaves nothing in Prometheus' scrape cache. Before the
// cap told the loop not to cache new series, each failed scrape cached
// sample_limit entries (series text and label set) and the cache was only
// flushed when it had doubled (prometheus_target_scrapes_cache_flush_forced_total):
// 100 such pods held 430 MB (make soak).
func TestChurnIsNotCached(t *testing.T) {
	url, scrapes := churnTarget(t, 2000)
	_, _, reg := scrapeCapped(t, 1_000_000, url, "  sample_limit: 1500\n")
	waitFor(t, "five failed scrapes", func() bool { return scrapes() >= 5 })
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range fams {
		if f.GetName() == "prometheus_target_scrapes_cache_flush_forced_total" {
			found = true
			if v := f.GetMetric()[0].GetCounter().GetValue(); v != 0 {
				t.Errorf("%s = %v: failed scrapes filled the scrape cache", f.GetName(), v)
			}
		}
	}
	if !found {
		t.Error("prometheus_target_scrapes_cache_flush_forced_total not registered")
	}
}

// churnTarget serves n series with fresh id values on every scrape, until
// the test ends; scrapes says how many scrapes it has answered.
func churnTarget(t *testing.T, n int) (url string, scrapes func() int) {
	t.Helper()
	var (
		mu    sync.Mutex
		count int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		count++
		k := count
		mu.Unlock()
		for i := range n {
			fmt.Fprintf(w, "churn{id=\"%d-%d\"} 1\n", k, i)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() int { mu.Lock(); defer mu.Unlock(); return count }
}

// scrapeCapped scrapes url every 100ms through Prometheus' scrape manager
// into a real TSDB behind the series cap (max), until the test ends.
// extra is more YAML for the job.
func scrapeCapped(t *testing.T, max uint64, url, extra string) (*storage.Storage, promstorage.AppendableV2, *prometheus.Registry) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := storage.Open(storage.Options{Path: t.TempDir()}, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	reg := prometheus.NewRegistry()
	app, err := LimitHeadSeries(store.Appendable(), max, store.HeadSeries, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(logger, fmt.Sprintf(`scrape_configs:
- job_name: app
  scrape_interval: 100ms
  scrape_timeout: 100ms
%s  static_configs:
  - targets: [%q]
`, extra, strings.TrimPrefix(url, "http://")))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(cfg, app, ManagerOptions{}, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go m.Run(ctx)
	// Cleanups run last-in first-out: scraping stops before storage closes.
	t.Cleanup(func() { cancel(); m.Stop() })
	return store, app, reg
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
