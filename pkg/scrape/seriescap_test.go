package scrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
)

// fakeHead counts series as the TSDB head does: a series exists from its
// first append, committed or not. It implements storage.GetRef like the
// TSDB's appenders.
type fakeHead struct {
	refs map[string]storage.SeriesRef
}

func (h *fakeHead) AppenderV2(context.Context) storage.AppenderV2 { return &fakeHeadAppender{h: h} }
func (h *fakeHead) numSeries() uint64                             { return uint64(len(h.refs)) }

type fakeHeadAppender struct{ h *fakeHead }

func (a *fakeHeadAppender) Append(ref storage.SeriesRef, ls labels.Labels, _, _ int64, _ float64, _ *histogram.Histogram, _ *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	if r, ok := a.h.refs[ls.String()]; ok {
		return r, nil
	}
	r := storage.SeriesRef(len(a.h.refs) + 1)
	a.h.refs[ls.String()] = r
	return r, nil
}

func (a *fakeHeadAppender) GetRef(ls labels.Labels, _ uint64) (storage.SeriesRef, labels.Labels) {
	return a.h.refs[ls.String()], ls
}
func (a *fakeHeadAppender) Commit() error   { return nil }
func (a *fakeHeadAppender) Rollback() error { return nil }

func series(i int) labels.Labels { return labels.FromStrings("__name__", "m", "i", fmt.Sprint(i)) }

func TestSeriesCap(t *testing.T) {
	const max = 3
	head := &fakeHead{refs: map[string]storage.SeriesRef{}}
	reg := prometheus.NewRegistry()
	app, err := LimitHeadSeries(head, max, head.numSeries, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	a := app.AppenderV2(context.Background())
	for i := range max {
		// New series are created on commit: no ref yet, and the scrape
		// loop is told not to cache them.
		if r, err := a.Append(0, series(i), 0, 1000, 1, nil, nil, storage.AOptions{}); !errors.Is(err, errDeferred) || !errors.Is(err, storage.ErrOutOfBounds) || r != 0 {
			t.Fatalf("series %d: ref %d, %v, want errDeferred matching ErrOutOfBounds", i, r, err)
		}
	}
	if _, err := a.Append(0, series(max), 0, 1000, 1, nil, nil, storage.AOptions{}); !errors.Is(err, ErrHeadSeriesLimit) || !errors.Is(err, storage.ErrOutOfBounds) {
		t.Fatalf("new series over the cap: %v, want ErrHeadSeriesLimit matching ErrOutOfBounds", err)
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if head.numSeries() != max {
		t.Errorf("head holds %d series, want %d", head.numSeries(), max)
	}
	refs := map[int]storage.SeriesRef{}
	for i := range max {
		refs[i] = head.refs[series(i).String()]
	}

	a = app.AppenderV2(context.Background())
	// Existing series keep flowing, by cached ref as the scrape loop sends
	// them, and by labels alone as after a restart or from a new target.
	if r, err := a.Append(refs[0], series(0), 0, 2000, 2, nil, nil, storage.AOptions{}); err != nil || r != refs[0] {
		t.Errorf("existing series by ref: ref %d err %v", r, err)
	}
	if r, err := a.Append(0, series(1), 0, 2000, 2, nil, nil, storage.AOptions{}); err != nil || r != refs[1] {
		t.Errorf("existing series by labels: ref %d err %v", r, err)
	}
	if _, err := a.Append(0, series(max+1), 0, 2000, 1, nil, nil, storage.AOptions{}); !errors.Is(err, ErrHeadSeriesLimit) {
		t.Errorf("second new series: %v", err)
	}
	// Kubelet series pass the cap: kubectl top and the HPA must keep working.
	kubelet := labels.FromStrings("__name__", ContainerCPUMetric, "job", KubeletJobName, "pod", "new-pod")
	if _, err := a.Append(0, kubelet, 0, 2000, 1, nil, nil, storage.AOptions{}); err != nil {
		t.Errorf("new kubelet series over the cap: %v", err)
	}
	// Nor is a new target's up: the scrape loop fails a scrape whose
	// report it cannot append.
	if _, err := a.Append(0, labels.FromStrings("__name__", "up", "job", "app", "instance", "new-pod"), 0, 2000, 1, nil, nil, storage.AOptions{}); err != nil {
		t.Errorf("new target's up over the cap: %v", err)
	}
	if err := a.Rollback(); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(app.(*seriesCap).rejected); got != 2 {
		t.Errorf("metrics_gateway_series_rejected_total = %v, want 2", got)
	}
	if n, err := testutil.GatherAndCount(reg, "metrics_gateway_series_rejected_total"); err != nil || n != 1 {
		t.Errorf("metric registered %d times: %v", n, err)
	}

	// Room again (series left the head): new series are accepted.
	delete(head.refs, series(1).String())
	delete(head.refs, series(2).String())
	delete(head.refs, kubelet.String()) // the fake keeps rolled-back series
	a = app.AppenderV2(context.Background())
	if _, err := a.Append(0, series(max), 0, 3000, 1, nil, nil, storage.AOptions{}); !errors.Is(err, errDeferred) {
		t.Errorf("new series below the cap: %v, want it deferred", err)
	}
	// The scrape's own report series are cached at once: the scrape loop
	// fails a scrape whose report cannot be appended.
	if _, err := a.Append(0, labels.FromStrings("__name__", "up", "job", "app"), 0, 3000, 1, nil, nil, storage.AOptions{}); err != nil {
		t.Errorf("new up series: %v", err)
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
}

// A scrape that fails (sample_limit, say) and rolls back must leave no
// series behind, or a target with fresh ids every scrape fills the head.
func TestSeriesCapRollbackCreatesNothing(t *testing.T) {
	head := &fakeHead{refs: map[string]storage.SeriesRef{}}
	app, err := LimitHeadSeries(head, 1000, head.numSeries, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for scrape := range 3 {
		a := app.AppenderV2(context.Background())
		for i := range 100 {
			if _, err := a.Append(0, series(scrape*100+i), 0, 1000, 1, nil, nil, storage.AOptions{}); !errors.Is(err, errDeferred) {
				t.Fatal(err)
			}
		}
		if err := a.Rollback(); err != nil {
			t.Fatal(err)
		}
	}
	if n := head.numSeries(); n != 0 {
		t.Errorf("rolled-back scrapes left %d series", n)
	}
	a := app.AppenderV2(context.Background())
	for i := range 5 {
		if _, err := a.Append(0, series(i), 0, 1000, 1, nil, nil, storage.AOptions{}); !errors.Is(err, errDeferred) {
			t.Fatal(err)
		}
	}
	if err := a.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := head.numSeries(); n != 5 {
		t.Errorf("committed scrape: %d series, want 5", n)
	}
	// The next scrape finds them by hash and gets their refs back.
	a = app.AppenderV2(context.Background())
	if r, err := a.Append(0, series(3), 0, 2000, 1, nil, nil, storage.AOptions{}); err != nil || r != head.refs[series(3).String()] {
		t.Errorf("second scrape: ref %d, %v", r, err)
	}
	_ = a.Commit()
}

// The real TSDB must expose GetRef through its AppenderV2, or every
// existing series with an unknown ref would count as new.
func TestSeriesCapTSDBHasGetRef(t *testing.T) {
	db, err := tsdb.Open(t.TempDir(), nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a := db.AppenderV2(context.Background())
	defer a.Rollback()
	if _, ok := a.(storage.GetRef); !ok {
		t.Fatalf("%T does not implement storage.GetRef", a)
	}
}

func TestSeriesCapArguments(t *testing.T) {
	head := &fakeHead{refs: map[string]storage.SeriesRef{}}
	if _, err := LimitHeadSeries(head, 0, head.numSeries, slog.Default(), prometheus.NewRegistry()); err == nil {
		t.Error("zero limit accepted")
	}
	if _, err := LimitHeadSeries(head, 1, nil, slog.Default(), prometheus.NewRegistry()); err == nil {
		t.Error("nil getter accepted")
	}
}

// The scrape loop's warning about out-of-bounds samples, which every new
// pod series' deferral would trigger, is logged at debug level only.
func TestDeferredWarningIsDebug(t *testing.T) {
	for _, level := range []slog.Level{slog.LevelInfo, slog.LevelDebug} {
		var buf bytes.Buffer
		l := slog.New(deferredAsDebug{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: level})}).With("component", "scrape")
		l.Warn(outOfBoundsMessage, "num_dropped", 3)
		l.Warn("Something else")
		out := buf.String()
		if !strings.Contains(out, "level=WARN msg=\"Something else\"") {
			t.Errorf("level %v: other warnings must pass: %q", level, out)
		}
		if got, want := strings.Contains(out, "level=DEBUG msg=\""+outOfBoundsMessage), level == slog.LevelDebug; got != want {
			t.Errorf("level %v: the out-of-bounds warning at debug: %v, want %v: %q", level, got, want, out)
		}
		if strings.Contains(out, "level=WARN msg=\""+outOfBoundsMessage) {
			t.Errorf("level %v: the out-of-bounds warning still a warning: %q", level, out)
		}
	}
}
