package storage

import (
	"context"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/tsdb/record"
	"github.com/prometheus/prometheus/util/compression"
)

func TestOpenRejectsUnknownWALCompression(t *testing.T) {
	_, err := Open(Options{Path: t.TempDir(), WALCompression: "lz4"}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err == nil || !strings.Contains(err.Error(), `"lz4"`) || !strings.Contains(err.Error(), "zstd") {
		t.Fatalf("got %v, want an error naming lz4 and the valid choices", err)
	}
}

// A WAL written with one compression is replayed with another: changing the
// flag across a restart loses nothing.
func TestWALCompressionChangesAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	t0 := int64(1_790_000_000_000)
	for i, c := range []compression.Type{compression.Snappy, compression.Zstd, compression.None, compression.Snappy} {
		s, err := Open(Options{Path: dir, WALCompression: c}, logger, prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		appendAll(t, s, "up", []int64{t0 + int64(i)*15000}, []float64{float64(i)})
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s := open(t, dir)
	defer s.Close()
	if got := samplesOf(t, s, "up", t0, t0+45000); got != "0 1 2 3" {
		t.Fatalf("after restarts with snappy, zstd, none and snappy: samples %q, want 0 1 2 3", got)
	}
}

func samplesOf(t *testing.T, s *Storage, name string, mint, maxt int64) string {
	t.Helper()
	q, err := s.db.Querier(mint, maxt)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	set := q.Select(context.Background(), false, nil, labels.MustNewMatcher(labels.MatchEqual, "__name__", name))
	var vs []string
	for set.Next() {
		it := set.At().Iterator(nil)
		for it.Next() != 0 {
			_, v := it.At()
			vs = append(vs, strconv.FormatFloat(v, 'f', -1, 64))
		}
	}
	if err := set.Err(); err != nil {
		t.Fatal(err)
	}
	return strings.Join(vs, " ")
}

// BenchmarkScrapeCommit commits a scrape's worth of samples (10 series) from
// each of 1,000 goroutines that then wait for the next round, as the scrape
// manager's loops do, once per WAL compression. Besides the time of a round
// it reports the time of one commit and the stack each waiting goroutine
// holds after it: the WAL record is compressed on the committing goroutine.
func BenchmarkScrapeCommit(b *testing.B) {
	for _, c := range compression.Types() {
		b.Run("wal="+c, func(b *testing.B) { benchmarkScrapeCommit(b, c) })
	}
}

func benchmarkScrapeCommit(b *testing.B, c compression.Type) {
	const targets, seriesPerTarget = 1000, 10
	dir := b.TempDir()
	s, err := Open(Options{Path: dir, WALCompression: c}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	rounds := make([]chan int64, targets)
	errs := make(chan error, targets)
	for i := range rounds {
		rounds[i] = make(chan int64)
		ls := make([]labels.Labels, seriesPerTarget)
		for j := range ls {
			ls[j] = labels.FromStrings("__name__", "http_requests_total", "pod", "pod-"+strconv.Itoa(i), "code", strconv.Itoa(200+j))
		}
		go func() {
			for ts := range rounds[i] {
				errs <- commitScrape(s, ls, ts)
				wg.Done()
			}
		}()
	}
	b.ResetTimer()
	for n := range b.N {
		wg.Add(targets)
		for _, r := range rounds {
			r <- int64(1_790_000_000_000 + n*15_000)
		}
		wg.Wait()
		for range targets {
			if err := <-errs; err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	for _, r := range rounds {
		close(r)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*targets), "ns/commit")
	b.ReportMetric(float64(after.StackInuse-before.StackInuse)/targets, "stack-B/target")
	b.ReportMetric(float64(dirBytes(b, filepath.Join(dir, "wal")))/float64(b.N*targets*seriesPerTarget), "WAL-B/sample")
}

func dirBytes(b *testing.B, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		n += fi.Size()
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

func commitScrape(s *Storage, ls []labels.Labels, ts int64) error {
	app := s.Appendable().AppenderV2(context.Background())
	for i, l := range ls {
		if _, err := app.Append(0, l, 0, ts, float64(ts/1000+int64(i)), nil, nil, promstorage.AOptions{}); err != nil {
			_ = app.Rollback()
			return err
		}
	}
	return app.Commit()
}

// Snappy's encoder keeps a 32 KB table on the stack. Committed on the
// scrape loops' goroutines, every loop's stack grew to 64 KB; the
// committer keeps the commits, and that table, on goroutines of its own.
func TestSnappyCommitsLeaveCallersStacksSmall(t *testing.T) {
	const callers, series = 200, 50
	s, err := Open(Options{Path: t.TempDir(), WALCompression: compression.Snappy}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// The committer's goroutines grow once: let them before measuring.
	ls := make([]labels.Labels, series)
	for j := range ls {
		ls[j] = labels.FromStrings("__name__", "warm_up", "series", strconv.Itoa(j))
	}
	if err := commitScrape(s, ls, 1_790_000_000_000); err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var committed sync.WaitGroup
	release := make(chan struct{})
	errs := make(chan error, callers)
	committed.Add(callers)
	for i := range callers {
		ls := make([]labels.Labels, series)
		for j := range ls {
			ls[j] = labels.FromStrings("__name__", "http_requests_total", "pod", "pod-"+strconv.Itoa(i), "code", strconv.Itoa(j))
		}
		go func() {
			errs <- commitScrape(s, ls, 1_790_000_015_000)
			committed.Done()
			<-release // hold the stack as a scrape loop waiting for its next round does
		}()
	}
	committed.Wait()
	runtime.ReadMemStats(&after)
	close(release)
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// A goroutine starts with 8 KB under the race detector too; one that ran
	// snappy's encoder holds 64 KB.
	if per := (int64(after.StackInuse) - int64(before.StackInuse)) / callers; per > 24<<10 {
		t.Fatalf("each committing goroutine holds %d bytes of stack, want at most 24 KiB: the WAL record was compressed on the caller's stack", per)
	}
}

// BenchmarkWALRecordCompression compresses the samples record of one
// kubelet scrape (70 pods: a CPU counter, a working set in pages and a
// start time per container, two node series) as the WAL does, with the
// encoder's tables in cache ("hot") and after 32 MB of other memory traffic
// ("cold"), as between two scrapes of a gateway. It reports the compressed
// size as a share of the record.
func BenchmarkWALRecordCompression(b *testing.B) {
	rec := kubeletRecord(70)
	evict := make([]byte, 32<<20)
	for _, c := range compression.Types() {
		for _, cold := range []bool{false, true} {
			name := "wal=" + c + "/hot"
			if cold {
				name = "wal=" + c + "/cold"
			}
			b.Run(name, func(b *testing.B) {
				buf := compression.NewSyncEncodeBuffer()
				var out []byte
				for b.Loop() {
					if cold {
						b.StopTimer()
						for i := 0; i < len(evict); i += 64 {
							evict[i]++
						}
						b.StartTimer()
					}
					var err error
					if out, err = compression.Encode(c, rec, buf); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(out))/float64(len(rec)), "size-ratio")
			})
		}
	}
}

// kubeletRecord is the WAL samples record of one scrape of a kubelet
// running pods pods: refs in series order, the kubelet's own timestamps.
func kubeletRecord(pods int) []byte {
	rnd := rand.New(rand.NewPCG(1, 2))
	t0 := int64(1_790_000_000_000)
	var s []record.RefSample
	ref := chunks.HeadSeriesRef(50_000)
	add := func(ts int64, v float64) {
		s = append(s, record.RefSample{Ref: ref, T: ts, V: v})
		ref++
	}
	add(t0, 1e5*rnd.Float64())               // node CPU seconds
	add(t0, float64(rnd.Int64N(1<<20)*4096)) // node working set
	for range pods {
		ts := t0 - rnd.Int64N(10_000) // the container's last housekeeping
		add(ts, 1e3*rnd.Float64())
		add(ts, float64(rnd.Int64N(1<<16)*4096))
		add(t0, float64(1_789_990_000+rnd.Int64N(3)*60)) // pods started in a few waves
	}
	var enc record.Encoder
	return enc.Samples(s, nil)
}
