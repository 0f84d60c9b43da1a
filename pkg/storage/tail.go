package storage

import (
	"context"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
)

// DefaultTailHorizon is how long a Tail remembers a series after its newest
// sample: well beyond any window the resource API reads (three metric
// resolutions), short enough that deleted pods leave soon.
const DefaultTailHorizon = 10 * time.Minute

// TailOptions say which series a Tail keeps and how readers find them.
type TailOptions struct {
	// Names are the metric names kept. Checking the name first keeps the
	// cost on every other append to one label lookup.
	Names []string
	// Matchers further restrict the series kept; all must match.
	Matchers []*labels.Matcher
	// GroupBy names the labels whose values group series for
	// TailReader.Group.
	GroupBy []string
	// Horizon is how long a series is remembered after its newest sample
	// (DefaultTailHorizon when 0). Ranges that start before now - Horizon
	// cannot be answered by the tail.
	Horizon time.Duration
	// Now is the clock the horizon is measured with; nil is the wall clock.
	Now func() time.Time
	// Info, when set, is called once per series as the tail takes it in;
	// TailSeries.Info returns what it gave, so that readers need not look
	// labels up on every read.
	Info func(labels.Labels) any
}

// Tail keeps, for every series its options select, the two newest samples
// committed to the TSDB, so that a reader who needs only the latest samples
// (the resource metrics API: two for a rate, one for a gauge) reads them
// from memory instead of decoding head chunks and building a PromQL matrix.
// The TSDB stays the one place samples are written to: a Tail is filled by
// the appenders of Storage.Appendable, after a successful commit, and is
// seeded from the TSDB when it is created.
//
// Its answers are exact or refused. TailSeries.Last says whether a range's
// newest samples are all known, and TailReader.Complete whether a series
// the tail does not hold can have samples in a range; when either says no,
// the reader must ask the TSDB. A Tail is safe for concurrent use.
type Tail struct {
	opts    TailOptions
	horizon int64 // milliseconds

	mu sync.RWMutex
	// byRef finds a committed sample's group by the TSDB's reference;
	// the series is then found in the group by its reference.
	byRef  map[storage.SeriesRef]*tailGroup
	groups map[string]*tailGroup
	// completeFrom: a series the tail does not hold has no sample after
	// this time. It is where seeding started, and moves up to the cutoff
	// of each eviction.
	completeFrom int64
	lastSweep    int64
}

// tailGroup holds the series sharing GroupBy values, sorted by labels as
// PromQL sorts a matrix. They are held by value: a reader of a group (one
// pod's containers, one node) finds them side by side in one allocation,
// not behind a pointer each, and the collector has one object to mark per
// group instead of one per series.
type tailGroup struct {
	key    string
	series []TailSeries
}

// find returns the group's series whose TSDB reference is ref, or nil.
// A group holds a pod's or a node's few series, so a scan is enough.
func (g *tailGroup) find(ref storage.SeriesRef) *TailSeries {
	for i := range g.series {
		if g.series[i].ref == ref {
			return &g.series[i]
		}
	}
	return nil
}

// TailSeries is one series of a Tail. It is read only inside Tail.Read,
// through a pointer that is not kept past it: its group may move it.
type TailSeries struct {
	ls   labels.Labels
	info any
	ref  storage.SeriesRef
	// s[:n] are the newest samples, oldest first.
	s [2]promql.FPoint
	n uint8
	// histogram: a histogram sample was appended; the series is not
	// answered from the tail.
	histogram bool
	// unknownUntil: samples at or before this time may be missing (dropped
	// to keep two, or older than what seeding read).
	unknownUntil int64
}

// Labels are the series' labels.
func (s *TailSeries) Labels() labels.Labels { return s.ls }

// Info is what TailOptions.Info said of the series, or nil.
func (s *TailSeries) Info() any { return s.info }

// Last appends to dst, oldest first, up to n of the newest float samples
// in (mint, maxt] that follow the series' newest staleness marker at or
// before maxt, as a PromQL range selector over storage read with
// QueryOptions.DropStale sees them, and returns it. ok is false when the
// tail cannot tell: an older sample it does not hold may be among them, or
// the series holds histograms. n must be 1 or 2.
func (s *TailSeries) Last(mint, maxt int64, n int, dst []promql.FPoint) (_ []promql.FPoint, ok bool) {
	if s.histogram {
		return dst, false
	}
	start := len(dst)
	i := int(s.n) - 1
	for ; i >= 0 && len(dst)-start < n; i-- {
		p := s.s[i]
		if p.T > maxt {
			continue
		}
		if p.T <= mint || value.IsStaleNaN(p.F) {
			break
		}
		dst = append(dst, p)
	}
	if i < 0 && len(dst)-start < n && s.unknownUntil > mint {
		return dst[:start], false
	}
	slices.Reverse(dst[start:])
	return dst, true
}

func (s *TailSeries) push(t int64, v float64) {
	if s.n > 0 && t <= s.s[s.n-1].T {
		return // the TSDB keeps the first sample of a timestamp, too
	}
	if int(s.n) == len(s.s) {
		s.unknownUntil = max(s.unknownUntil, s.s[0].T)
		copy(s.s[:], s.s[1:])
		s.n--
	}
	s.s[s.n] = promql.FPoint{T: t, F: v}
	s.n++
}

func (s *TailSeries) newest() int64 {
	if s.n == 0 {
		return math.MinInt64
	}
	return s.s[s.n-1].T
}

// NewTail returns a Tail of o's series, seeded with their samples of the
// last o.Horizon, that every later commit through Appendable keeps up to
// date. Call it before the first append: a commit that races with the
// seeding may be missed.
func (s *Storage) NewTail(o TailOptions) (*Tail, error) {
	if len(o.Names) == 0 || len(o.GroupBy) == 0 {
		return nil, errors.New("tail: need metric names and group-by labels")
	}
	if o.Horizon <= 0 {
		o.Horizon = DefaultTailHorizon
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	t := &Tail{
		opts:    o,
		horizon: o.Horizon.Milliseconds(),
		byRef:   map[storage.SeriesRef]*tailGroup{},
		groups:  map[string]*tailGroup{},
	}
	if err := t.seed(s.db); err != nil {
		return nil, err
	}
	s.tailsMu.Lock()
	s.tails = append(s.tails, t)
	s.tailsMu.Unlock()
	return t, nil
}

// seed reads the last horizon of the selected series from q. Every series
// then starts out not knowing what precedes the seeded range.
func (t *Tail) seed(q storage.Queryable) error {
	now := t.opts.Now().UnixMilli()
	from := now - t.horizon
	t.completeFrom, t.lastSweep = from, now
	querier, err := q.Querier(from+1, math.MaxInt64)
	if err != nil {
		return fmt.Errorf("seed tail: %w", err)
	}
	defer querier.Close()
	ms := append([]*labels.Matcher{labels.MustNewMatcher(labels.MatchRegexp, labels.MetricName, regexpOf(t.opts.Names))}, t.opts.Matchers...)
	set := querier.Select(context.Background(), false, &storage.SelectHints{Start: from + 1, End: math.MaxInt64}, ms...)
	var it chunkenc.Iterator
	for set.Next() {
		series := set.At()
		ts := t.series(series.Labels(), 0)
		ts.unknownUntil = from
		it = series.Iterator(it)
		for vt := it.Next(); vt != chunkenc.ValNone; vt = it.Next() {
			if vt != chunkenc.ValFloat {
				ts.histogram = true
				continue
			}
			ts.push(it.At())
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("seed tail: %w", err)
		}
	}
	if err := set.Err(); err != nil {
		return fmt.Errorf("seed tail: %w", err)
	}
	return nil
}

func regexpOf(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = regexp.QuoteMeta(n)
	}
	return strings.Join(quoted, "|")
}

// selects reports whether the tail keeps the series ls, whose metric name
// is name.
func (t *Tail) selects(name string, ls labels.Labels) bool {
	if !slices.Contains(t.opts.Names, name) {
		return false
	}
	for _, m := range t.opts.Matchers {
		if !m.Matches(ls.Get(m.Name)) {
			return false
		}
	}
	return true
}

// series returns the series ls, creating it. The caller holds mu (or owns
// t, while seeding). ref, when not 0, is the TSDB's reference for it. The
// pointer is good until the next series is created or swept.
func (t *Tail) series(ls labels.Labels, ref storage.SeriesRef) *TailSeries {
	key := t.groupKey(ls)
	g := t.groups[key]
	if g == nil {
		g = &tailGroup{key: key}
		t.groups[key] = g
	}
	i := sort.Search(len(g.series), func(i int) bool { return labels.Compare(g.series[i].ls, ls) >= 0 })
	if i < len(g.series) && labels.Equal(g.series[i].ls, ls) {
		s := &g.series[i]
		if ref != 0 && s.ref != ref {
			// The TSDB recreated the series (after its head dropped it).
			delete(t.byRef, s.ref)
			s.ref = ref
			t.byRef[ref] = g
		}
		return s
	}
	s := TailSeries{ls: ls, ref: ref, unknownUntil: t.completeFrom}
	if t.opts.Info != nil {
		s.info = t.opts.Info(ls)
	}
	g.series = slices.Insert(g.series, i, s)
	if ref != 0 {
		t.byRef[ref] = g
	}
	return &g.series[i]
}

func (t *Tail) groupKey(ls labels.Labels) string {
	n := 0
	for _, name := range t.opts.GroupBy {
		n += len(ls.Get(name)) + 1
	}
	b := make([]byte, 0, n)
	for _, name := range t.opts.GroupBy {
		b = append(append(b, ls.Get(name)...), 0xff)
	}
	return string(b)
}

// tailSample is one committed sample the tail keeps.
type tailSample struct {
	ref       storage.SeriesRef
	ls        labels.Labels
	t         int64
	v         float64
	histogram bool
}

// add records a commit's samples.
func (t *Tail) add(samples []tailSample) {
	if len(samples) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range samples {
		p := &samples[i]
		// The TSDB never reuses a reference, so one seen before is the
		// same series.
		var s *TailSeries
		if g := t.byRef[p.ref]; g != nil {
			s = g.find(p.ref)
		}
		if s == nil {
			s = t.series(p.ls, p.ref)
		}
		if p.histogram {
			s.histogram = true
			continue
		}
		s.push(p.t, p.v)
	}
	if now := t.opts.Now().UnixMilli(); now-t.lastSweep > t.horizon/4 {
		t.sweep(now)
	}
}

// sweep forgets series whose newest sample is older than the horizon.
func (t *Tail) sweep(now int64) {
	cutoff := now - t.horizon
	for key, g := range t.groups {
		g.series = slices.DeleteFunc(g.series, func(s TailSeries) bool {
			if s.newest() > cutoff {
				return false
			}
			if s.ref != 0 {
				delete(t.byRef, s.ref)
			}
			return true
		})
		if len(g.series) == 0 {
			delete(t.groups, key)
		}
	}
	t.completeFrom = max(t.completeFrom, cutoff)
	t.lastSweep = now
}

// Len is the number of series the tail holds.
func (t *Tail) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	n := 0
	for _, g := range t.groups {
		n += len(g.series)
	}
	return n
}

// Read calls f with a reader of the tail, which commits do not change
// while f runs. Nothing f is given may be kept past its return.
func (t *Tail) Read(f func(r *TailReader)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	f(&TailReader{t: t})
}

// TailReader reads a Tail inside Tail.Read.
type TailReader struct {
	t   *Tail
	key []byte
}

// Complete reports whether every series the tail does not hold has no
// sample after mint: when it does not, a reader of a range starting at
// mint must ask the TSDB.
func (r *TailReader) Complete(mint int64) bool { return mint >= r.t.completeFrom }

// Group returns the series whose GroupBy label values are values, in
// order, sorted by labels. The slice belongs to the tail: read its series
// in place (&group[i]), as copying one copies its labels and samples.
func (r *TailReader) Group(values ...string) []TailSeries {
	r.key = r.key[:0]
	for _, v := range values {
		r.key = append(append(r.key, v...), 0xff)
	}
	if g := r.t.groups[string(r.key)]; g != nil {
		return g.series
	}
	return nil
}

// tailAppendable feeds the tails from the commits of the TSDB's appenders.
type tailAppendable struct{ s *Storage }

func (a tailAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	inner := a.s.db.AppenderV2(ctx)
	if a.s.commits != nil {
		inner = committerAppender{AppenderV2: inner, c: a.s.commits}
	}
	if a.s.reserve != nil {
		inner = reserveAppender{AppenderV2: inner, r: a.s.reserve}
	}
	a.s.tailsMu.Lock()
	tails := a.s.tails
	a.s.tailsMu.Unlock()
	if len(tails) == 0 {
		return inner
	}
	// Every scrape takes an appender: reusing them keeps a kubelet's few
	// hundred pending samples from being allocated anew each time.
	app, _ := a.s.tailAppenders.Get().(*tailAppender)
	if app == nil {
		app = &tailAppender{pool: &a.s.tailAppenders}
	}
	app.AppenderV2, app.tails = inner, tails
	for len(app.pending) < len(tails) {
		app.pending = append(app.pending, nil)
	}
	return app
}

type tailAppender struct {
	storage.AppenderV2
	tails   []*Tail
	pending [][]tailSample
	pool    *sync.Pool
}

// release clears the appender and returns it to the pool: after Commit or
// Rollback an appender is not used again.
func (a *tailAppender) release() {
	for i := range a.pending {
		clear(a.pending[i])
		a.pending[i] = a.pending[i][:0]
	}
	a.AppenderV2, a.tails = nil, nil
	a.pool.Put(a)
}

var _ storage.GetRef = (*tailAppender)(nil)

func (a *tailAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	ref, err := a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	var partial *storage.AppendPartialError
	if err != nil && !errors.As(err, &partial) {
		return ref, err
	}
	name := ls.Get(labels.MetricName)
	for i, tl := range a.tails {
		if tl.selects(name, ls) {
			a.pending[i] = append(a.pending[i], tailSample{ref: ref, ls: ls, t: t, v: v, histogram: h != nil || fh != nil})
		}
	}
	return ref, err
}

// GetRef passes the TSDB's lookup through, for the series cap above.
func (a *tailAppender) GetRef(ls labels.Labels, hash uint64) (storage.SeriesRef, labels.Labels) {
	return getRef(a.AppenderV2, ls, hash)
}

// Commit hands the samples to the tails only once the TSDB has them.
func (a *tailAppender) Commit() error {
	err := a.AppenderV2.Commit()
	if err == nil {
		for i, tl := range a.tails {
			tl.add(a.pending[i])
		}
	}
	a.release()
	return err
}

func (a *tailAppender) Rollback() error {
	err := a.AppenderV2.Rollback()
	a.release()
	return err
}
