package scrape

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/storage"
)

// ErrHeadSeriesLimit is returned by Append for a series that is not in the
// head while the head is at its series cap. It matches
// storage.ErrOutOfBounds under errors.Is on purpose: the scrape loop then
// skips that one sample and goes on with the scrape, as for a sample too
// old for the head, instead of failing (and rolling back) the whole scrape.
// Existing series of the same target keep flowing.
var ErrHeadSeriesLimit = headSeriesLimitError{}

type headSeriesLimitError struct{}

func (headSeriesLimitError) Error() string {
	return "head series limit reached: new series rejected"
}

func (headSeriesLimitError) Is(target error) bool { return target == storage.ErrOutOfBounds }

// LimitHeadSeries wraps app so that, once headSeries() reports max or
// more, appends that would create a series are refused with
// ErrHeadSeriesLimit; samples of series already in the head are appended.
// Appends racing from several scrape loops may each create one series past
// the cap before they see it reached, so the head holds at most max plus
// the number of concurrent appenders. Rejections are counted in
// metrics_gateway_series_rejected_total on reg.
func LimitHeadSeries(app storage.AppendableV2, max uint64, headSeries func() uint64, logger *slog.Logger, reg prometheus.Registerer) (storage.AppendableV2, error) {
	if headSeries == nil || max == 0 {
		return nil, errors.New("series cap: need a head-series getter and a positive limit")
	}
	rejected := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "metrics_gateway_series_rejected_total",
		Help: "Samples of new series not stored because the TSDB head held storage.maxHeadSeries series.",
	})
	if err := reg.Register(rejected); err != nil {
		return nil, fmt.Errorf("register series cap metric: %w", err)
	}
	return &seriesCap{app: app, max: max, headSeries: headSeries, logger: logger, rejected: rejected}, nil
}

type seriesCap struct {
	app        storage.AppendableV2
	max        uint64
	headSeries func() uint64
	logger     *slog.Logger
	rejected   prometheus.Counter
	// limited is whether the last decision on a new series was a refusal:
	// the cap is logged when it starts and stops biting, not per sample.
	limited atomic.Bool
}

var _ storage.AppendableV2 = (*seriesCap)(nil)

func (c *seriesCap) AppenderV2(ctx context.Context) storage.AppenderV2 {
	inner := c.app.AppenderV2(ctx)
	getRef, _ := inner.(storage.GetRef)
	return &seriesCapAppender{AppenderV2: inner, cap: c, getRef: getRef}
}

type seriesCapAppender struct {
	storage.AppenderV2
	cap *seriesCap
	// getRef looks a series up in the head without creating it; the TSDB's
	// appenders have it. Without it every unknown ref counts as new, and
	// new series are created at once.
	getRef   storage.GetRef
	rejected int
	// pending holds the samples of series not yet in the head until the
	// scrape commits: see Append.
	pending []pendingSample
}

// pendingSample is one deferred Append.
type pendingSample struct {
	ls    labels.Labels
	st, t int64
	v     float64
	h     *histogram.Histogram
	fh    *histogram.FloatHistogram
	opts  storage.AppendV2Options
}

// Append decides whether a series is new cheaply: a non-zero ref is one the
// scrape cache got back from an earlier append, so the series exists (or
// existed: the TSDB then recreates it, which the cap tolerates, as a
// garbage-collected series is rare and comes back at most once). A zero
// ref means the scrape loop has no ref for the series; the head is then
// asked by label hash whether it holds it.
//
// A series the head does not hold is created only when the scrape commits.
// The TSDB creates a series on Append, and a rolled-back scrape leaves its
// new series in the head, empty, until the next head compaction: a target
// that exposes fresh ids every scrape and fails its sample_limit each time
// would add sample_limit series per scrape (prometheus/prometheus#16427).
// Deferred, a failed scrape creates nothing. The cost: the scrape cache
// gets no ref for a new series on its first scrape, so that series is
// looked up by hash once more on the next scrape, and a series seen in one
// scrape only ends by lookback instead of a staleness marker.
func (a *seriesCapAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	if ref != 0 || a.getRef == nil {
		if ref == 0 && a.full(ls) {
			return 0, ErrHeadSeriesLimit
		}
		return a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	}
	if existing, _ := a.getRef.GetRef(ls, ls.Hash()); existing != 0 {
		return a.AppenderV2.Append(existing, ls, st, t, v, h, fh, opts)
	}
	if a.full(ls) {
		return 0, ErrHeadSeriesLimit
	}
	a.pending = append(a.pending, pendingSample{ls: ls, st: st, t: t, v: v, h: h, fh: fh, opts: opts})
	return 0, nil
}

// full reports, and counts, a new series refused at the cap. Kubelet
// series are never refused: they are bounded by the pods the cluster runs,
// and kubectl top and the HPA depend on them.
func (a *seriesCapAppender) full(ls labels.Labels) bool {
	if a.cap.headSeries()+uint64(len(a.pending)) < a.cap.max || ls.Get(model.JobLabel) == KubeletJobName {
		return false
	}
	a.rejected++
	return true
}

// Commit creates the scrape's new series, then commits. A deferred sample
// the TSDB refuses now (a duplicate within the scrape, say) is dropped, as
// the scrape loop would have dropped it.
func (a *seriesCapAppender) Commit() error {
	for i := range a.pending {
		p := &a.pending[i]
		if _, err := a.AppenderV2.Append(0, p.ls, p.st, p.t, p.v, p.h, p.fh, p.opts); err != nil && !errors.Is(err, ErrHeadSeriesLimit) {
			a.cap.logger.Debug("Deferred sample not stored", "series", p.ls.String(), "err", err)
		}
	}
	a.pending = nil
	a.report()
	return a.AppenderV2.Commit()
}

func (a *seriesCapAppender) Rollback() error {
	a.pending = nil
	a.report()
	return a.AppenderV2.Rollback()
}

// report counts refusals and logs the cap's state changes. Refusals count
// even on rollback: the samples were not stored either way.
func (a *seriesCapAppender) report() {
	c := a.cap
	if a.rejected > 0 {
		c.rejected.Add(float64(a.rejected))
		if !c.limited.Swap(true) {
			c.logger.Warn("Head series limit reached; new series are rejected until series are removed from the head",
				"limit", c.max, "head_series", c.headSeries(), "rejected", a.rejected)
		}
	} else if c.limited.Load() && c.headSeries() < c.max && c.limited.Swap(false) {
		c.logger.Info("Head series below limit again; new series accepted", "limit", c.max, "head_series", c.headSeries())
	}
	a.rejected = 0
}
