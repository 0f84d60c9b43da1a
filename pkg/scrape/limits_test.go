package scrape

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/labels"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// A target over a limit set by the gateway's defaults fails the whole
// scrape: up is 0 and the recorder counts the failure for that target,
// while a target within the limits of the same job is stored.
func TestLimitsFailTheScrape(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits Limits
		body   string
	}{
		{"sample limit", Limits{SampleLimit: 2}, "a 1\nb 1\nc 1\n"},
		// Limits count the target's labels too: __name__, instance and job.
		{"label limit", Limits{LabelLimit: 4}, `a{x="1",y="2"} 1` + "\n"},
		{"label value length", Limits{LabelValueLengthLimit: 24}, `a{x="0123456789012345678901234567890"} 1` + "\n"},
		{"label name length", Limits{LabelNameLengthLimit: 9}, `a{long_name_x="1"} 1` + "\n"},
		{"body size", Limits{BodySizeLimit: "1KB"}, "a 1\n" + strings.Repeat("# padding\n", 200)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logger := slog.New(slog.NewTextHandler(io.Discard, nil))
			store, err := storage.Open(storage.Options{Path: t.TempDir()}, logger, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			over := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, tc.body) }))
			defer over.Close()
			within := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "a 1\n") }))
			defer within.Close()
			overAddr, withinAddr := strings.TrimPrefix(over.URL, "http://"), strings.TrimPrefix(within.URL, "http://")

			gc := &GatewayConfig{APIVersion: ConfigAPIVersion, Kind: ConfigKind, Limits: tc.limits, ScrapeConfigs: []map[string]any{{
				"job_name": "app", "scrape_interval": "100ms", "scrape_timeout": "100ms",
				"static_configs": []any{map[string]any{"targets": []any{overAddr, withinAddr}}},
			}}}
			disabled := false
			gc.Pods.Enabled = &disabled
			SetDefaults(gc)
			if errs := gc.Validate(); len(errs) > 0 {
				t.Fatal(errs)
			}
			docs, err := gc.ScrapeDocs(Credentials{})
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(logger, docs...)
			if err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			m, err := NewManager(cfg, store.Appendable(), ManagerOptions{}, logger, reg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go m.Run(ctx)
			defer m.Stop()

			failures := func(target string) float64 {
				return testutil.ToFloat64(m.recorder.errors.WithLabelValues("app", target))
			}
			waitFor(t, "the failure counted", func() bool { return failures(overAddr) > 0 })
			waitFor(t, "the other target scraped", func() bool { return scraped(t, store, withinAddr) })
			if failures(withinAddr) != 0 {
				t.Errorf("target within limits counted %v failures", failures(withinAddr))
			}
			if scraped(t, store, overAddr) {
				t.Error("samples of the target over the limit were stored")
			}
		})
	}
}

// scraped reports whether series a of instance is in the store.
func scraped(t *testing.T, store *storage.Storage, instance string) bool {
	t.Helper()
	q, err := store.Queryable().Querier(0, 1<<62)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	ss := q.Select(context.Background(), false, nil,
		labels.MustNewMatcher(labels.MatchEqual, "__name__", "a"),
		labels.MustNewMatcher(labels.MatchEqual, "instance", instance))
	found := ss.Next()
	if err := ss.Err(); err != nil {
		t.Fatal(err)
	}
	return found
}
