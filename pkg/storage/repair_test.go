package storage

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/tsdb/chunks"
)

// writeBlock writes one block under dir holding series name with a sample
// every 15s over [from, from+1h).
func writeBlock(t *testing.T, dir, name string, from time.Time) string {
	t.Helper()
	var ss []chunks.Sample
	for ts := from; ts.Before(from.Add(time.Hour)); ts = ts.Add(15 * time.Second) {
		ss = append(ss, fSample{t: ts.UnixMilli(), f: 1})
	}
	path, err := tsdb.CreateBlock([]promstorage.Series{promstorage.NewListSeries(labels.FromStrings("__name__", name), ss)},
		dir, (2 * time.Hour).Milliseconds(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCorruptBlockIsMovedAside: a block whose index is damaged is moved to
// CorruptDir, with a log line naming it, and the storage opens and serves
// the other blocks. Without it, tsdb.Open fails on every start.
func TestCorruptBlockIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	now := time.Now().Truncate(time.Hour)
	good := writeBlock(t, dir, "good", now.Add(-4*time.Hour))
	bad := writeBlock(t, dir, "bad", now.Add(-2*time.Hour))
	if err := os.Truncate(filepath.Join(bad, "index"), 10); err != nil {
		t.Fatal(err)
	}
	var log strings.Builder
	s, err := Open(Options{Path: dir}, slog.New(slog.NewTextHandler(&log, nil)), nil)
	if err != nil {
		t.Fatalf("open with a corrupt block: %v", err)
	}
	defer s.Close()
	if _, err := os.Stat(filepath.Join(dir, CorruptDir, filepath.Base(bad))); err != nil {
		t.Errorf("corrupt block not in %s: %v", CorruptDir, err)
	}
	if _, err := os.Stat(good); err != nil {
		t.Errorf("good block: %v", err)
	}
	if !strings.Contains(log.String(), "Moved a corrupt block aside") || !strings.Contains(log.String(), filepath.Base(bad)) {
		t.Errorf("no log line naming the block:\n%s", log.String())
	}
	v, err := s.Instant(context.Background(), "count_over_time(good[1h])", now.Add(-3*time.Hour), QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if vec := v.(promql.Vector); len(vec) != 1 || vec[0].F < 200 {
		t.Errorf("good block's samples: %v", vec)
	}
}

// TestTruncatedWALKeepsWhatPrecedes: a WAL cut short mid-record (a crash
// while writing, a full disk) is repaired on open, and every sample
// committed before the damaged record is served.
func TestTruncatedWALKeepsWhatPrecedes(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	now := time.Now().Truncate(time.Second)
	const commits = 20
	for i := range commits {
		appendAll(t, s, "m", []int64{now.Add(time.Duration(i-commits) * 15 * time.Second).UnixMilli()}, []float64{float64(i)})
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segments, err := filepath.Glob(filepath.Join(dir, "wal", "0*"))
	if err != nil || len(segments) == 0 {
		t.Fatalf("WAL segments: %v %v", segments, err)
	}
	last := segments[len(segments)-1]
	data, err := os.ReadFile(last)
	if err != nil {
		t.Fatal(err)
	}
	// Cut inside the last record, not in the zero padding after it.
	end := bytes.LastIndexFunc(data, func(r rune) bool { return r != 0 })
	if err := os.Truncate(last, int64(end-5)); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir)
	defer s.Close()
	v, err := s.Instant(context.Background(), "count_over_time(m[10m])", now, QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vec := v.(promql.Vector)
	if len(vec) != 1 || vec[0].F < commits-1 || vec[0].F > commits {
		t.Errorf("samples after the damaged record: %v, want %d or %d", vec, commits-1, commits)
	}
	t.Logf("%v of %d samples kept after cutting %s inside its last record", vec[0].F, commits, filepath.Base(last))
}
