package storage

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
)

func TestTailSeriesLast(t *testing.T) {
	pts := func(tv ...float64) []promql.FPoint {
		var out []promql.FPoint
		for i := 0; i < len(tv); i += 2 {
			out = append(out, promql.FPoint{T: int64(tv[i]), F: tv[i+1]})
		}
		return out
	}
	for _, tc := range []struct {
		name       string
		pushed     []promql.FPoint // oldest first; the series keeps two
		unknown    int64
		mint, maxt int64
		n          int
		want       []promql.FPoint
		exact      bool
	}{
		{"both in range", pts(10, 1, 20, 2), 0, 5, 30, 2, pts(10, 1, 20, 2), true},
		{"last one", pts(10, 1, 20, 2), 0, 5, 30, 1, pts(20, 2), true},
		{"range is left-open", pts(10, 1, 20, 2), 0, 10, 30, 2, pts(20, 2), true},
		{"range is right-closed", pts(10, 1, 20, 2), 0, 5, 20, 2, pts(10, 1, 20, 2), true},
		{"dropped samples are before the range", pts(10, 1, 20, 2, 30, 3), 0, 15, 40, 2, pts(20, 2, 30, 3), true},
		{"dropped samples may be in the range", pts(10, 1, 20, 2, 30, 3), 0, 5, 25, 2, pts(), false},
		{"dropped samples are outside a one-sample answer", pts(10, 1, 20, 2, 30, 3), 0, 5, 25, 1, pts(20, 2), true},
		{"newer than the evaluation, older unknown", pts(30, 3, 40, 4), 25, 5, 35, 2, pts(), false},
		{"newer than the evaluation, nothing older", pts(30, 3, 40, 4), 0, 5, 35, 2, pts(30, 3), true},
		{"staleness marker hides what precedes it", pts(10, 1, 20, stale), 50, 5, 30, 2, pts(), true},
		{"sample after a marker", pts(20, stale, 30, 3), 50, 5, 40, 2, pts(30, 3), true},
		{"marker after the evaluation does not count", pts(10, 1, 20, stale), 0, 5, 15, 2, pts(10, 1), true},
		{"seeded: unknown before the seed, range starts after it", pts(10, 1), 8, 8, 30, 2, pts(10, 1), true},
		{"seeded: range starts before the seed", pts(10, 1), 8, 5, 30, 2, pts(), false},
		{"repeated timestamp kept once", pts(10, 1, 10, 1, 20, 2), 0, 5, 30, 2, pts(10, 1, 20, 2), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &TailSeries{unknownUntil: tc.unknown}
			for _, p := range tc.pushed {
				s.push(p.T, p.F)
			}
			got, exact := s.Last(tc.mint, tc.maxt, tc.n, nil)
			if exact != tc.exact || (exact && !equalPoints(got, tc.want)) || (!exact && len(got) != 0) {
				t.Errorf("Last(%d, %d, %d) = %v, %v; want %v, %v", tc.mint, tc.maxt, tc.n, got, exact, tc.want, tc.exact)
			}
		})
	}
	t.Run("histograms are not answered", func(t *testing.T) {
		s := &TailSeries{histogram: true}
		s.push(10, 1)
		if _, exact := s.Last(0, 20, 1, nil); exact {
			t.Error("a series with histograms was answered")
		}
	})
}

// equalPoints compares values bit for bit, so that markers compare equal.
func equalPoints(a, b []promql.FPoint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].T != b[i].T || (a[i].F != b[i].F && !(a[i].F != a[i].F && b[i].F != b[i].F)) {
			return false
		}
	}
	return true
}

func kubeletLabels(name, ns, pod, ctr string) labels.Labels {
	return labels.FromStrings("__name__", name, "job", "kubelet", "namespace", ns, "pod", pod, "container", ctr)
}

func newTestTail(t *testing.T, s *Storage, now func() time.Time) *Tail {
	t.Helper()
	tail, err := s.NewTail(TailOptions{
		Names:    []string{"cpu", "mem"},
		Matchers: []*labels.Matcher{labels.MustNewMatcher(labels.MatchEqual, "job", "kubelet")},
		GroupBy:  []string{"namespace", "pod"},
		Now:      now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tail
}

// groupSamples reads a group's series: labels and the samples of (mint, maxt].
func groupSamples(tail *Tail, mint, maxt int64, values ...string) (out map[string][]promql.FPoint, order []string, complete bool) {
	out = map[string][]promql.FPoint{}
	tail.Read(func(r *TailReader) {
		complete = r.Complete(mint)
		for _, s := range r.Group(values...) {
			got, _ := s.Last(mint, maxt, 2, nil)
			out[s.Labels().String()] = got
			order = append(order, s.Labels().String())
		}
	})
	return out, order, complete
}

func TestTailFollowsCommits(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	t0 := time.UnixMilli(1_790_000_000_000)
	now := t0
	tail := newTestTail(t, s, func() time.Time { return now })
	ctx := context.Background()

	app := s.Appendable().AppenderV2(ctx)
	if _, ok := app.(promstorage.GetRef); !ok {
		t.Error("the appender hides the TSDB's GetRef, which the series cap needs")
	}
	appendOne := func(app promstorage.AppenderV2, ls labels.Labels, ts int64, v float64) {
		t.Helper()
		if _, err := app.Append(0, ls, 0, ts, v, nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ms := t0.UnixMilli()
	appendOne(app, kubeletLabels("mem", "a", "p", "c2"), ms, 7)
	appendOne(app, kubeletLabels("cpu", "a", "p", "c1"), ms, 1)
	appendOne(app, labels.FromStrings("__name__", "cpu", "job", "pods", "namespace", "a", "pod", "p", "container", "c1"), ms, 99)
	appendOne(app, kubeletLabels("other", "a", "p", "c1"), ms, 99)
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	// A rolled-back append never reaches the tail.
	app = s.Appendable().AppenderV2(ctx)
	appendOne(app, kubeletLabels("cpu", "a", "p", "c1"), ms+1000, 1000)
	if err := app.Rollback(); err != nil {
		t.Fatal(err)
	}
	app = s.Appendable().AppenderV2(ctx)
	appendOne(app, kubeletLabels("cpu", "a", "p", "c1"), ms+15000, 2)
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	// A refused sample (out of order) neither.
	app = s.Appendable().AppenderV2(ctx)
	if _, err := app.Append(0, kubeletLabels("cpu", "a", "p", "c1"), 0, ms+5000, 500, nil, nil, promstorage.AOptions{}); err == nil {
		t.Fatal("the TSDB took an out-of-order sample")
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}

	got, order, complete := groupSamples(tail, ms-1, ms+20000, "a", "p")
	want := map[string][]promql.FPoint{
		kubeletLabels("cpu", "a", "p", "c1").String(): {{T: ms, F: 1}, {T: ms + 15000, F: 2}},
		kubeletLabels("mem", "a", "p", "c2").String(): {{T: ms, F: 7}},
	}
	if !reflect.DeepEqual(got, want) || !complete {
		t.Errorf("group a/p = %v (complete %v), want %v", got, complete, want)
	}
	if wantOrder := []string{kubeletLabels("cpu", "a", "p", "c1").String(), kubeletLabels("mem", "a", "p", "c2").String()}; !reflect.DeepEqual(order, wantOrder) {
		t.Errorf("group order %v, want labels order %v", order, wantOrder)
	}
	if n := tail.Len(); n != 2 {
		t.Errorf("tail holds %d series, want 2", n)
	}

	// Past the horizon, a commit forgets the series it no longer hears of,
	// and ranges before the cutoff are no longer complete.
	now = t0.Add(DefaultTailHorizon + time.Minute)
	app = s.Appendable().AppenderV2(ctx)
	appendOne(app, kubeletLabels("cpu", "b", "q", "c"), now.UnixMilli(), 3)
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := tail.Len(); n != 1 {
		t.Errorf("after the horizon the tail holds %d series, want 1", n)
	}
	tail.Read(func(r *TailReader) {
		if r.Complete(ms) {
			t.Error("a range before the cutoff is reported complete")
		}
		if !r.Complete(now.UnixMilli() - time.Minute.Milliseconds()) {
			t.Error("a recent range is reported incomplete")
		}
		if len(r.Group("a", "p")) != 0 {
			t.Error("forgotten group still answered")
		}
	})
}

// TestTailKeepsReferencesAcrossMoves feeds the tail directly: series that
// sort before a group's earlier ones move them within the group, the TSDB
// may give a series a new reference, and a sweep drops a group's older
// series. Every sample must still land on its own series, and no reference
// may outlive its series.
func TestTailKeepsReferencesAcrossMoves(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	t0 := time.UnixMilli(1_790_000_000_000)
	now := t0
	tail := newTestTail(t, s, func() time.Time { return now })
	ms := t0.UnixMilli()
	sample := func(ref promstorage.SeriesRef, ctr string, at int64, v float64) tailSample {
		return tailSample{ref: ref, ls: kubeletLabels("mem", "a", "p", ctr), t: at, v: v}
	}
	// z, then y and x, each sorting before the ones already there.
	tail.add([]tailSample{sample(3, "z", ms, 3)})
	tail.add([]tailSample{sample(2, "y", ms, 2), sample(1, "x", ms, 1)})
	tail.add([]tailSample{sample(3, "z", ms+1000, 30), sample(1, "x", ms+1000, 10), sample(2, "y", ms+1000, 20)})
	// The TSDB recreated y under a new reference.
	tail.add([]tailSample{sample(7, "y", ms+2000, 200)})
	got, _, _ := groupSamples(tail, ms-1, ms+5000, "a", "p")
	want := map[string][]promql.FPoint{
		kubeletLabels("mem", "a", "p", "x").String(): {{T: ms, F: 1}, {T: ms + 1000, F: 10}},
		kubeletLabels("mem", "a", "p", "y").String(): {{T: ms + 1000, F: 20}, {T: ms + 2000, F: 200}},
		kubeletLabels("mem", "a", "p", "z").String(): {{T: ms, F: 3}, {T: ms + 1000, F: 30}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("group a/p = %v, want %v", got, want)
	}
	if _, ok := tail.byRef[2]; ok {
		t.Error("y's old reference is still held")
	}
	// Past the horizon only z is heard of: x and y go, and with them their
	// references; z, now first in its group, still takes its samples.
	now = t0.Add(DefaultTailHorizon + time.Minute)
	tail.add([]tailSample{sample(3, "z", now.UnixMilli(), 300)})
	tail.add([]tailSample{sample(3, "z", now.UnixMilli()+1000, 301)})
	if n := tail.Len(); n != 1 {
		t.Errorf("after the horizon the tail holds %d series, want 1", n)
	}
	if len(tail.byRef) != 1 || tail.byRef[3] == nil {
		t.Errorf("references held after the sweep: %v, want only z's", tail.byRef)
	}
	got, _, _ = groupSamples(tail, now.UnixMilli()-1, now.UnixMilli()+1000, "a", "p")
	want = map[string][]promql.FPoint{
		kubeletLabels("mem", "a", "p", "z").String(): {{T: now.UnixMilli(), F: 300}, {T: now.UnixMilli() + 1000, F: 301}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("after the horizon group a/p = %v, want %v", got, want)
	}
}

func TestTailSeedsFromTheTSDB(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	t0 := time.UnixMilli(1_790_000_000_000)
	ms := t0.UnixMilli()
	app := s.Appendable().AppenderV2(context.Background())
	ls := kubeletLabels("cpu", "a", "p", "c")
	for i := range 60 { // 15 minutes at 15s
		if _, err := app.Append(0, ls, 0, ms+int64(i)*15000, float64(i), nil, nil, promstorage.AOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopened: the WAL is replayed, and the tail is seeded from the TSDB.
	s, err := Open(Options{Path: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	last := ms + 59*15000
	now := time.UnixMilli(last + 5000)
	tail := newTestTail(t, s, func() time.Time { return now })
	got, _, complete := groupSamples(tail, last-45000, now.UnixMilli(), "a", "p")
	if want := []promql.FPoint{{T: last - 15000, F: 58}, {T: last, F: 59}}; !complete || !equalPoints(got[ls.String()], want) {
		t.Errorf("seeded tail: %v (complete %v), want %v", got, complete, want)
	}
	// Before the seeded range the tail cannot vouch for anything.
	tail.Read(func(r *TailReader) {
		if r.Complete(ms) {
			t.Error("a range before the seed is reported complete")
		}
	})
	// New commits continue the seeded series.
	app = s.Appendable().AppenderV2(context.Background())
	if _, err := app.Append(0, ls, 0, last+15000, 60, nil, nil, promstorage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	if got, _, _ := groupSamples(tail, last-45000, last+20000, "a", "p"); !equalPoints(got[ls.String()], []promql.FPoint{{T: last, F: 59}, {T: last + 15000, F: 60}}) {
		t.Errorf("after a commit: %v", got)
	}
	if n := tail.Len(); n != 1 {
		t.Errorf("the seeded series and its first commit are %d series, want 1", n)
	}
}

func TestTailMarksHistograms(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	t0 := time.UnixMilli(1_790_000_000_000)
	tail := newTestTail(t, s, func() time.Time { return t0 })
	app := s.Appendable().AppenderV2(context.Background())
	ls := kubeletLabels("cpu", "a", "p", "c")
	h := &histogram.Histogram{Count: 1, Sum: 1, Schema: 0, ZeroThreshold: 0.001, ZeroCount: 1}
	if _, err := app.Append(0, ls, 0, t0.UnixMilli(), 0, h, nil, promstorage.AOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	tail.Read(func(r *TailReader) {
		for _, s := range r.Group("a", "p") {
			if _, exact := s.Last(0, t0.UnixMilli(), 1, nil); exact {
				t.Error("a series holding a histogram was answered from the tail")
			}
		}
	})
}
