package storage

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
)

func open(t *testing.T, dir string) *Storage {
	t.Helper()
	s, err := Open(Options{Path: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func appendAll(t *testing.T, s *Storage, name string, ts []int64, vs []float64) {
	t.Helper()
	app := s.Appendable().AppenderV2(context.Background())
	ls := labels.FromStrings("__name__", name, "job", "kubelet")
	for i := range ts {
		if _, err := app.Append(0, ls, 0, ts[i], vs[i], nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
}

var stale = math.Float64frombits(value.StaleNaN)

func TestDropStale(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	t0 := int64(1_790_000_000_000)
	appendAll(t, s, "live", []int64{t0, t0 + 15000, t0 + 30000}, []float64{1, 2, 3})
	appendAll(t, s, "gone", []int64{t0, t0 + 15000, t0 + 20000}, []float64{1, 2, stale})
	appendAll(t, s, "back", []int64{t0, t0 + 5000, t0 + 15000, t0 + 30000}, []float64{1, stale, 7, 8})
	appendAll(t, s, "gonelater", []int64{t0, t0 + 15000, t0 + 50000}, []float64{1, 2, stale})
	at := time.UnixMilli(t0 + 40000)
	for _, tc := range []struct {
		dropStale bool
		want      map[string]int // series -> samples in the range
	}{
		{false, map[string]int{"live": 3, "gone": 2, "back": 3, "gonelater": 2}},
		// "gonelater"'s marker is after the evaluation time: still live then.
		{true, map[string]int{"live": 3, "back": 2, "gonelater": 2}},
	} {
		v, err := s.Instant(context.Background(), `{job="kubelet"}[1m]`, at, QueryOptions{DropStale: tc.dropStale})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, series := range v.(promql.Matrix) {
			got[series.Metric.Get("__name__")] = len(series.Floats)
		}
		if len(got) != len(tc.want) {
			t.Errorf("dropStale=%v: got %v, want %v", tc.dropStale, got, tc.want)
		}
		for k, n := range tc.want {
			if got[k] != n {
				t.Errorf("dropStale=%v: %s has %d samples, want %d", tc.dropStale, k, got[k], n)
			}
		}
	}
}

func TestSamplesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now().Truncate(time.Second)
	appendAll(t, s, "m", []int64{now.Add(-30 * time.Second).UnixMilli(), now.Add(-15 * time.Second).UnixMilli()}, []float64{1, 2})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Instant(context.Background(), "m", now, QueryOptions{}); !errors.Is(err, ErrNotReady) {
		t.Errorf("query after close: %v, want ErrNotReady", err)
	}
	s = open(t, dir)
	defer s.Close()
	v, err := s.Instant(context.Background(), "m[1m]", now, QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m := v.(promql.Matrix); len(m) != 1 || len(m[0].Floats) != 2 || m[0].Floats[1].F != 2 {
		t.Errorf("after reopen: %v", m)
	}
}

func TestQueryErrors(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	var bad *BadQueryError
	if _, err := s.Instant(context.Background(), "sum(", time.Now(), QueryOptions{}); !errors.As(err, &bad) {
		t.Errorf("parse error: %v, want BadQueryError", err)
	}
	if _, err := s.Range(context.Background(), "up", time.Now(), time.Now(), 0, QueryOptions{}); !errors.As(err, &bad) {
		t.Errorf("zero step: %v, want BadQueryError", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Instant(ctx, "up", time.Now(), QueryOptions{}); err == nil {
		t.Errorf("canceled context: no error")
	}
	if _, err := Open(Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry()); err == nil {
		t.Errorf("empty path: no error")
	}
}

// A returned matrix is the caller's: the engine's pools, to which a query's
// Close hands its point slices, must not lend them to the next query.
func TestMatrixOutlivesNextQuery(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	t0 := int64(1_790_000_000_000)
	appendAll(t, s, "a", []int64{t0, t0 + 15000, t0 + 30000}, []float64{1, 2, 3})
	appendAll(t, s, "b", []int64{t0, t0 + 15000, t0 + 30000}, []float64{7, 8, 9})
	start, end := time.UnixMilli(t0), time.UnixMilli(t0+30000)
	first, err := s.Range(context.Background(), "a", start, end, 15*time.Second, QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := s.Instant(context.Background(), "a[1m]", end, QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := s.Range(context.Background(), "b", start, end, 15*time.Second, QueryOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Instant(context.Background(), "b[1m]", end, QueryOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for name, v := range map[string]any{"range": first, "instant": kept} {
		fs := v.(promql.Matrix)[0].Floats
		if len(fs) != 3 || fs[0].F != 1 || fs[1].F != 2 || fs[2].F != 3 {
			t.Errorf("%s result changed after later queries: %v, want 1 2 3", name, fs)
		}
	}
}
