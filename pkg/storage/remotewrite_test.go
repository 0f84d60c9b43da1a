package storage

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	promscrape "github.com/prometheus/prometheus/scrape"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
)

// sink is a remote-write endpoint that keeps the names of the series it
// was sent.
type sink struct {
	mu    sync.Mutex
	names map[string]bool
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, err := remote.DecodeWriteRequest(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ts := range req.Timeseries {
		for _, l := range ts.Labels {
			if l.Name == labels.MetricName {
				s.names[l.Value] = true
			}
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *sink) received() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for n := range s.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// TestRemoteWriteAgentKeepsOnlyLocalJobs: with an agent, every sample is
// sent, the TSDB holds only the local job's series and those appended
// outside a scrape, and the agent's series are counted.
func TestRemoteWriteAgentKeepsOnlyLocalJobs(t *testing.T) {
	rcv := &sink{names: map[string]bool{}}
	srv := httptest.NewServer(rcv)
	t.Cleanup(srv.Close)
	cfg, err := config.Load(fmt.Sprintf("remote_write:\n- url: %s\n  queue_config:\n    batch_send_deadline: 100ms\n", srv.URL), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry() // shared, as in the gateway: no metric may collide
	s, err := Open(Options{Path: t.TempDir()}, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	rw, err := s.NewRemoteWriteAgent(cfg, func(job string) bool { return job == "kubelet" }, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	app := rw.Appendable(s.Appendable())
	scrapeOf := func(job string) context.Context {
		target := promscrape.NewTarget(labels.FromStrings("job", job, "instance", job+":80"), &config.ScrapeConfig{JobName: job}, nil, nil)
		return promscrape.ContextWithTarget(context.Background(), target)
	}
	// The queues' WAL watchers start on their own goroutines and send only
	// samples newer than their start: these are a minute ahead of it.
	now := time.Now().Add(time.Minute).UnixMilli()
	commit := func(ts int64) {
		for _, a := range []struct {
			ctx  context.Context
			name string
		}{
			{scrapeOf("kubernetes-pods"), "pod_series"},
			{scrapeOf("kubelet"), "kubelet_series"},
			{context.Background(), "recorded_series"},
		} {
			ap := app.AppenderV2(a.ctx)
			for i := range 3 {
				if _, err := ap.Append(0, labels.FromStrings(labels.MetricName, a.name, "i", fmt.Sprint(i)), 0, ts, 1, nil, nil, promstorage.AOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if err := ap.Commit(); err != nil {
				t.Fatal(err)
			}
		}
	}
	commit(now)
	if got := rw.AgentSeries(); got != 9 {
		t.Errorf("agent series %d, want 9", got)
	}
	if got := s.HeadSeries(); got != 6 {
		t.Errorf("TSDB head series %d, want 6 (kubelet and recorded)", got)
	}
	want := []string{"kubelet_series", "pod_series", "recorded_series"}
	deadline := time.Now().Add(30 * time.Second)
	for !slices.Equal(rcv.received(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("sent %v, want %v", rcv.received(), want)
		}
		// A commit wakes the watchers; one made before they listen waits
		// for their 15 s poll.
		time.Sleep(50 * time.Millisecond)
		now += 1000
		commit(now)
	}
	if err := rw.Close(); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
}
