package scrape

import (
	"context"
	"errors"
	"fmt"
	"github.com/prometheus/common/model"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
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
	// appenders have it. Without it every unknown ref counts as new.
	getRef   storage.GetRef
	rejected int
}

// Append decides whether a series is new cheaply: a non-zero ref is one the
// scrape cache got back from an earlier append, so the series exists (or
// existed: the TSDB then recreates it, which the cap tolerates, as a
// garbage-collected series is rare and comes back at most once). A zero
// ref means the scrape loop has not stored the series in this target's
// lifetime; only then, and only while the head is full, is the head asked
// by label hash whether it holds the series, e.g. after a restart or from
// another target.
func (a *seriesCapAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	if ref == 0 && a.cap.headSeries() >= a.cap.max {
		if a.getRef != nil {
			ref, _ = a.getRef.GetRef(ls, ls.Hash())
		}
		// Kubelet series are never refused: they are bounded by the pods
		// the cluster runs, and kubectl top and the HPA depend on them.
		if ref == 0 && ls.Get(model.JobLabel) != KubeletJobName {
			a.rejected++
			return 0, ErrHeadSeriesLimit
		}
	}
	return a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
}

func (a *seriesCapAppender) Commit() error {
	a.report()
	return a.AppenderV2.Commit()
}

func (a *seriesCapAppender) Rollback() error {
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
