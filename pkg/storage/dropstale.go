package storage

import (
	"context"
	"math"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
)

// dropStaleQueryable hides what comes before a series' newest staleness
// marker. The scrape loop writes a marker when a series vanishes from its
// target (with track_timestamps_staleness, also for series carrying explicit
// timestamps, as kubelets send). Instant selectors honour markers, range
// selectors skip them; the resource API reads raw samples through range
// selectors and needs a vanished container to vanish from its answers.
type dropStaleQueryable struct{ storage.Queryable }

func (q dropStaleQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	inner, err := q.Queryable.Querier(mint, maxt)
	if err != nil {
		return nil, err
	}
	return dropStaleQuerier{Querier: inner, maxt: maxt}, nil
}

type dropStaleQuerier struct {
	storage.Querier
	maxt int64
}

func (q dropStaleQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	mint, maxt := int64(math.MinInt64), q.maxt
	if hints != nil {
		mint = hints.Start
		if hints.End < maxt {
			maxt = hints.End
		}
	}
	return &dropStaleSet{SeriesSet: q.Querier.Select(ctx, sortSeries, hints, ms...), mint: mint, maxt: maxt}
}

type dropStaleSet struct {
	storage.SeriesSet
	mint, maxt int64
	cur        storage.Series
	it         chunkenc.Iterator
	err        error
}

func (s *dropStaleSet) Next() bool {
	for s.SeriesSet.Next() {
		series := s.SeriesSet.At()
		s.it = series.Iterator(s.it)
		samples, ok, err := freshSamples(s.it, s.mint, s.maxt)
		if err != nil {
			s.err = err
			return false
		}
		if !ok {
			// Histograms are not what markers are about here: pass them as they are.
			s.cur = series
			return true
		}
		if len(samples) == 0 {
			continue
		}
		s.cur = &storage.SeriesEntry{
			Lset:             series.Labels(),
			SampleIteratorFn: func(chunkenc.Iterator) chunkenc.Iterator { return storage.NewListSeriesIterator(samples) },
		}
		return true
	}
	return false
}

func (s *dropStaleSet) At() storage.Series { return s.cur }

func (s *dropStaleSet) Err() error {
	if s.err != nil {
		return s.err
	}
	return s.SeriesSet.Err()
}

func (s *dropStaleSet) Warnings() annotations.Annotations { return s.SeriesSet.Warnings() }

// freshSamples returns the float samples in [mint, maxt] that follow the
// newest staleness marker. A marker before mint does not matter: the range
// holds only what follows it. ok is false when the series holds histograms.
func freshSamples(it chunkenc.Iterator, mint, maxt int64) (fSamples, bool, error) {
	out := make(fSamples, 0, 4) // a resource range holds about three samples
	for vt := it.Seek(mint); vt != chunkenc.ValNone; vt = it.Next() {
		if vt != chunkenc.ValFloat {
			return nil, false, nil
		}
		t, v := it.At()
		if t > maxt {
			break
		}
		if value.IsStaleNaN(v) {
			out = out[:0]
			continue
		}
		out = append(out, fSample{t: t, f: v})
	}
	return out, true, it.Err()
}

type fSample struct {
	t int64
	f float64
}

func (s fSample) T() int64                      { return s.t }
func (s fSample) ST() int64                     { return 0 }
func (s fSample) F() float64                    { return s.f }
func (s fSample) H() *histogram.Histogram       { return nil }
func (s fSample) FH() *histogram.FloatHistogram { return nil }
func (s fSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fSample) Copy() chunks.Sample           { return s }

type fSamples []fSample

// Get hands out a pointer: boxing the struct itself into the interface
// would allocate on every access of the engine's iterator.
func (s fSamples) Get(i int) chunks.Sample { return &s[i] }
func (s fSamples) Len() int                { return len(s) }
