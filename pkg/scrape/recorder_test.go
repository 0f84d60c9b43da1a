package scrape

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
)

// nopAppendable stores nothing and fails commits on demand.
type nopAppendable struct{ failCommit bool }

func (a *nopAppendable) AppenderV2(context.Context) storage.AppenderV2 { return nopAppender{a} }

type nopAppender struct{ a *nopAppendable }

func (nopAppender) Append(storage.SeriesRef, labels.Labels, int64, int64, float64, *histogram.Histogram, *histogram.FloatHistogram, storage.AppendV2Options) (storage.SeriesRef, error) {
	return 0, nil
}

func (n nopAppender) Commit() error {
	if n.a.failCommit {
		return errors.New("commit failed")
	}
	return nil
}
func (nopAppender) Rollback() error { return nil }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// report appends one scrape report of a target, as the scrape loop does.
func report(t *testing.T, app storage.AppendableV2, target string, up, dur float64, commit bool) {
	t.Helper()
	a := app.AppenderV2(context.Background())
	for name, v := range map[string]float64{"up": up, "scrape_duration_seconds": dur, "scrape_samples_scraped": 10} {
		ls := labels.FromStrings("__name__", name, "job", "kubelet", "instance", target, "node", target)
		if _, err := a.Append(0, ls, 0, 1, v, nil, nil, storage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// An ordinary sample is ignored.
	_, _ = a.Append(0, labels.FromStrings("__name__", "container_cpu_usage_seconds_total", "job", "kubelet", "instance", target), 0, 1, 0, nil, nil, storage.AOptions{})
	if commit {
		_ = a.Commit()
	} else {
		_ = a.Rollback()
	}
}

func TestRecorder(t *testing.T) {
	var logs syncBuffer
	reg := prometheus.NewRegistry()
	r, err := newRecorder(slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	r.reason = func(job, instance string) error { return errors.New("connection refused") }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.run(ctx)
	app := r.wrap(&nopAppendable{})
	stale := math.Float64frombits(value.StaleNaN)

	report(t, app, "node-a", 1, 0.25, true)
	report(t, app, "node-c", 1, 0.25, true)
	// A job is counted at 0 from its first successful scrape, so a failure
	// rate is never an empty graph.
	if n, got := testutil.CollectAndCount(r.failures), testutil.ToFloat64(r.failures.WithLabelValues("kubelet")); n != 1 || got != 0 {
		t.Errorf("after one good scrape: %d failure series at %v, want 1 at 0", n, got)
	}
	// Healthy targets have no series of their own: up in the TSDB says it.
	if n := testutil.CollectAndCount(r.up) + testutil.CollectAndCount(r.errors); n != 0 {
		t.Errorf("%d per-target series for healthy targets, want 0", n)
	}
	report(t, app, "node-b", 0, 0.5, true)
	report(t, app, "node-b", 0, 0.5, true)
	report(t, app, "node-b", 0, 0.5, false) // rolled back: not counted
	report(t, app, "node-a", 0, 0.1, true)
	report(t, app, "node-a", 1, 0.2, true)

	if got := testutil.ToFloat64(r.errors.WithLabelValues("kubelet", "node-b")); got != 2 {
		t.Errorf("node-b errors = %v, want 2", got)
	}
	if got := testutil.ToFloat64(r.errors.WithLabelValues("kubelet", "node-a")); got != 1 {
		t.Errorf("node-a errors = %v, want 1", got)
	}
	if got := testutil.ToFloat64(r.up.WithLabelValues("kubelet", "node-b")); got != 0 {
		t.Errorf("node-b up = %v", got)
	}
	// node-a failed once and recovered: it keeps its series, at 1.
	if got := testutil.ToFloat64(r.up.WithLabelValues("kubelet", "node-a")); got != 1 {
		t.Errorf("node-a up = %v", got)
	}
	if n := testutil.CollectAndCount(r.up); n != 2 {
		t.Errorf("%d up series, want 2 (node-a, node-b; never node-c)", n)
	}

	// The target goes away: its series go with it; the job's count stays.
	report(t, app, "node-b", stale, stale, true)
	report(t, app, "node-c", stale, stale, true)
	if n := testutil.CollectAndCount(r.up); n != 1 {
		t.Errorf("%d up series after node-b left, want 1", n)
	}
	if n := testutil.CollectAndCount(r.errors); n != 1 {
		t.Errorf("%d error series after node-b left, want 1", n)
	}
	if got := testutil.ToFloat64(r.failures.WithLabelValues("kubelet")); got != 3 {
		t.Errorf("kubelet job failures = %v, want 3", got)
	}

	want := []string{
		`msg="Target scrape failing; its series are marked stale until it recovers" job=kubelet target=node-b node=node-b err="connection refused"`,
		`msg="Target scrape failing; its series are marked stale until it recovers" job=kubelet target=node-a`,
		`msg="Target scrapes again" job=kubelet target=node-a`,
		`msg="Target removed" job=kubelet target=node-b`,
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out := logs.String()
		missing := ""
		for _, w := range want {
			if !strings.Contains(out, w) {
				missing = w
			}
		}
		if missing == "" {
			// Logged on change only: node-b failed three times, logged once.
			if n := strings.Count(out, "target=node-b node=node-b err="); n != 1 {
				t.Errorf("node-b failure logged %d times:\n%s", n, out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log lacks %q:\n%s", missing, out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRecorderCommitFailure: a scrape that was read but could not be
// stored (ENOSPC from the WAL) marks its target down with the commit's
// error, counts it, and fails checkCommits until a commit succeeds again.
// Prometheus counts such a target healthy: the scrape itself worked.
func TestRecorderCommitFailure(t *testing.T) {
	var logs syncBuffer
	r, err := newRecorder(slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	r.reason = func(job, instance string) error { return nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go r.run(ctx)
	disk := &nopAppendable{}
	app := r.wrap(disk)

	report(t, app, "node-a", 1, 0.1, true)
	if err := r.checkCommits(); err != nil {
		t.Fatalf("after a stored scrape: %v", err)
	}
	disk.failCommit = true
	report(t, app, "node-a", 1, 0.1, true)
	report(t, app, "node-a", 1, 0.1, true)
	if err := r.checkCommits(); err == nil || !strings.Contains(err.Error(), "commit failed") {
		t.Errorf("checkCommits with the disk full: %v", err)
	}
	if got := testutil.ToFloat64(r.up.WithLabelValues("kubelet", "node-a")); got != 0 {
		t.Errorf("node-a up = %v while its scrapes are lost, want 0", got)
	}
	if got := testutil.ToFloat64(r.errors.WithLabelValues("kubelet", "node-a")); got != 2 {
		t.Errorf("node-a errors = %v, want 2", got)
	}
	if got := testutil.ToFloat64(r.commitFailures); got != 2 {
		t.Errorf("commit failures = %v, want 2", got)
	}
	disk.failCommit = false
	report(t, app, "node-a", 1, 0.1, true)
	if err := r.checkCommits(); err != nil {
		t.Errorf("after space returned: %v", err)
	}
	if got := testutil.ToFloat64(r.up.WithLabelValues("kubelet", "node-a")); got != 1 {
		t.Errorf("node-a up = %v after space returned, want 1", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), `target=node-a node=node-a err="commit failed"`) {
		if time.Now().After(deadline) {
			t.Fatalf("the failure is not logged with the commit's error:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRatesReady: a target that answered once is not enough for a rate;
// two stored scrapes in a row are. A target that is down does not hold
// readiness back, and a failed scrape starts its count again.
func TestRatesReady(t *testing.T) {
	r, err := newRecorder(slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	app := r.wrap(&nopAppendable{})
	nodes := []string{"node-a", "node-b"}
	if err := r.ratesReady("kubelet", nil); err != nil {
		t.Errorf("no target yet: %v", err)
	}
	// Discovered, not scraped yet: a replica just started answers no cpu.
	if err := r.ratesReady("kubelet", nodes); err == nil || !strings.Contains(err.Error(), "2 of 2 targets") {
		t.Errorf("targets not scraped yet: %v", err)
	}
	report(t, app, "node-a", 1, 0.1, true)
	report(t, app, "node-b", 0, 0.1, true)
	if err := r.ratesReady("kubelet", nodes); err == nil || !strings.Contains(err.Error(), "node-a") {
		t.Errorf("node-a scraped once: %v", err)
	}
	report(t, app, "node-a", 1, 0.1, true)
	if err := r.ratesReady("kubelet", nodes); err != nil {
		t.Errorf("node-a scraped twice, node-b down: %v", err)
	}
	report(t, app, "node-b", 1, 0.1, true)
	if err := r.ratesReady("kubelet", nodes); err == nil {
		t.Error("node-b back with one scrape: ready")
	}
	if err := r.ratesReady("other", nil); err != nil {
		t.Errorf("another job: %v", err)
	}
}
