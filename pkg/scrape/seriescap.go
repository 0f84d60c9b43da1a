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

// errDeferred answers the Append of a new series of any job but the
// kubelet's: the sample is kept and its series created at Commit, but the
// scrape loop must not cache it. It matches storage.ErrOutOfBounds, which
// the scrape loop counts and goes on from without caching the series.
//
// Prometheus' scrape cache keeps an entry (the series' text and its whole
// label set) for every series an Append accepted, and keeps it after a
// failed scrape until the cache doubles: a target that sends sampleLimit
// fresh series every scrape holds up to twice sampleLimit entries, and 100
// such pods held 430 MB of cache and label sets, OOM-killing a 1Gi pod
// (make soak) while the head had 39,000 series. Uncached, a series enters
// the cache on its second scrape, found in the head by hash; the cache
// then holds only series the head holds, bounded by the head-series cap.
// Kubelet series are cached at once: their new series are new pods, few,
// and they feed kubectl top; so are the scrape's own report series.
var errDeferred = deferredError{}

type deferredError struct{}

func (deferredError) Error() string {
	return "new series deferred to commit, not cached until its next scrape"
}

func (deferredError) Is(target error) bool { return target == storage.ErrOutOfBounds }

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
// scrape only ends by lookback instead of a staleness marker. Outside the
// kubelet job the scrape loop is told errDeferred, so that it does not
// cache the series either (see there).
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
	if ls.Get(model.JobLabel) != KubeletJobName && !reportSeries[ls.Get(model.MetricNameLabel)] {
		return 0, errDeferred
	}
	return 0, nil
}

// reportSeries are the series the scrape loop adds about each scrape
// (https://prometheus.io/docs/concepts/jobs_instances/). Their Appends
// must not fail: the loop then fails the scrape. A handful per target,
// they are cached at once.
var reportSeries = map[string]bool{
	"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true,
	"scrape_samples_post_metric_relabeling": true, "scrape_series_added": true,
	"scrape_timeout_seconds": true, "scrape_sample_limit": true, "scrape_body_size_bytes": true,
}

// full reports, and counts, a new series refused at the cap. Kubelet
// series are never refused: they are bounded by the pods the cluster runs,
// and kubectl top and the HPA depend on them. Nor are a target's report
// series (up and the scrape_* series, a handful per target): refused, the
// scrape loop failed the whole scrape of every target that appeared while
// the head was full (make soak: a pod the HPA added).
func (a *seriesCapAppender) full(ls labels.Labels) bool {
	if a.cap.headSeries()+uint64(len(a.pending)) < a.cap.max || ls.Get(model.JobLabel) == KubeletJobName || reportSeries[ls.Get(model.MetricNameLabel)] {
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

// report counts refusals and logs the cap's state changes: limited at the
// first refusal, and not any more once the head is 10% under the cap, so
// that a head hovering at the cap does not log twice per scrape. Refusals
// count even on rollback: the samples were not stored either way.
func (a *seriesCapAppender) report() {
	c := a.cap
	if a.rejected > 0 {
		c.rejected.Add(float64(a.rejected))
		if !c.limited.Swap(true) {
			c.logger.Warn("Head series limit reached; new series are rejected until series are removed from the head",
				"limit", c.max, "head_series", c.headSeries(), "rejected", a.rejected)
		}
	} else if c.limited.Load() && c.headSeries() < c.max-c.max/10 && c.limited.Swap(false) {
		c.logger.Info("Head series below limit again; new series accepted", "limit", c.max, "head_series", c.headSeries())
	}
	a.rejected = 0
}
