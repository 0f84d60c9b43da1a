package storage

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
)

// TestReserve: below the free-space reserve a commit fails with the reason
// and stores nothing, the series cap's lookup still works, and commits
// succeed again once space returns. Open refuses outright on a filesystem
// already under the reserve.
func TestReserve(t *testing.T) {
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if _, err := Open(Options{Path: t.TempDir(), MinFreeBytes: 1 << 62}, logger, prometheus.NewRegistry()); err == nil || !strings.Contains(err.Error(), "under the reserve") {
		t.Fatalf("Open on a filesystem under the reserve: %v, want a refusal naming the reserve", err)
	}

	s, err := Open(Options{Path: t.TempDir(), MinFreeBytes: 1 << 20}, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var free atomic.Uint64
	free.Store(1 << 30)
	s.reserve.free = func(string) (uint64, error) { return free.Load(), nil }
	ls := labels.FromStrings("__name__", "x", "job", "kubelet")
	commit := func(ts int64) error {
		s.reserve.mu.Lock()
		s.reserve.checked = time.Time{} // no waiting out the statfs cache
		s.reserve.mu.Unlock()
		app := s.Appendable().AppenderV2(context.Background())
		if _, err := app.Append(0, ls, 0, ts, 1, nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
		return app.Commit()
	}
	if err := commit(1000); err != nil {
		t.Fatalf("with space: %v", err)
	}
	free.Store(512 << 10)
	err = commit(2000)
	if err == nil || !strings.Contains(err.Error(), "524288 bytes free, under the reserve of 1048576") {
		t.Fatalf("under the reserve: %v, want the reserve's error", err)
	}
	app := s.Appendable().AppenderV2(context.Background())
	if ref, _ := app.(promstorage.GetRef).GetRef(ls, ls.Hash()); ref == 0 {
		t.Error("GetRef does not find a stored series through the reserve")
	}
	_ = app.Rollback()
	free.Store(1 << 30)
	if err := commit(3000); err != nil {
		t.Fatalf("space back: %v", err)
	}
	v, err := s.Instant(context.Background(), "count_over_time(x[1m])", time.UnixMilli(3000), QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := v.String(); !strings.Contains(got, "=> 2 @") {
		t.Errorf("stored samples: %s, want 2 (the commit under the reserve stored nothing)", got)
	}
}
