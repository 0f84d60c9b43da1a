package scrape

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
)

// recorder turns the scrape loop's own report sample up, which passes
// through the appender on every scrape, into self-metrics of failing
// targets and state-change logs. Hooking the appender sees every scrape
// exactly once, without polling the targets.
//
// Per-target series exist only for targets that have failed: the TSDB
// already holds up and scrape_duration_seconds for every target, and a
// healthy target's self-metrics would only repeat them (at 7,100 targets,
// 21,300 series gathered and parsed on every self-scrape).
type recorder struct {
	logger   *slog.Logger
	errors   *prometheus.CounterVec
	up       *prometheus.GaugeVec
	failures *prometheus.CounterVec // per job, never deleted: jobs are few and fixed
	// commitFailures counts scrapes that were read but could not be
	// stored (a full disk, a failing WAL write).
	commitFailures prometheus.Counter
	// reason returns the target's last scrape error; set by the Manager.
	reason func(job, instance string) error

	mu    sync.Mutex
	state map[targetKey]targetState
	// commitErr is the error of the last commit when it failed, nil once
	// one succeeds again.
	commitErr error
	// transitions are logged off the scrape path, since finding the error
	// text means walking the target list.
	transitions chan transition
}

type targetKey struct{ job, instance string }

type targetState struct {
	up bool
	// stored counts the target's successful scrapes stored in a row, up to
	// two: what a rate (cpu) needs.
	stored uint8
	// failed: the target has failed since it appeared, so it has
	// per-target series.
	failed bool
}

type transition struct {
	key  targetKey
	node string
	up   bool
	gone bool
	// err, when set, is why the target counts as down: its scrape was
	// read but could not be stored.
	err error
}

const scrapeHealthMetric = "up"

func newRecorder(logger *slog.Logger, reg prometheus.Registerer) (*recorder, error) {
	r := &recorder{
		logger: logger,
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metrics_gateway_scrape_errors_total",
			Help: "Failed scrapes (connection, TLS, HTTP status, timeout, unparsable body, limits) per target, for targets that have failed.",
		}, []string{"job", "target"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "metrics_gateway_scrape_target_up",
			Help: "1 if the last scrape of the target succeeded, 0 otherwise; only for targets that have failed (the query API's up covers every target).",
		}, []string{"job", "target"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "metrics_gateway_scrape_failures_total",
			Help: "Failed scrapes per job, all targets together; present at 0 from a job's first scrape.",
		}, []string{"job"}),
		commitFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metrics_gateway_storage_commit_failures_total",
			Help: "Scrapes that were read but could not be stored (a full disk, a failing write-ahead log); their targets count as down.",
		}),
		state:       map[targetKey]targetState{},
		transitions: make(chan transition, 1024),
	}
	for _, c := range []prometheus.Collector{r.errors, r.up, r.failures, r.commitFailures} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register scrape self-metrics: %w", err)
		}
	}
	return r, nil
}

func (r *recorder) wrap(app storage.AppendableV2) storage.AppendableV2 {
	return recordingAppendable{app: app, r: r}
}

// observe is called with every committed up sample, and with 0 and the
// commit's error for an up sample whose commit failed.
func (r *recorder) observe(ls labels.Labels, v float64, commitErr error) {
	key := targetKey{job: ls.Get(model.JobLabel), instance: ls.Get(model.InstanceLabel)}
	if value.IsStaleNaN(v) {
		// The target is gone: forget it so nothing grows without bound.
		r.forget(key, ls.Get(NodeLabel))
		return
	}
	up := v == 1
	failures := r.failures.WithLabelValues(key.job)
	r.mu.Lock()
	prev, known := r.state[key]
	now := targetState{up: up, failed: prev.failed || !up}
	if up {
		now.stored = min(prev.stored+1, 2)
	}
	r.state[key] = now
	r.mu.Unlock()
	switch {
	case !up:
		r.up.WithLabelValues(key.job, key.instance).Set(0)
		r.errors.WithLabelValues(key.job, key.instance).Inc()
		failures.Inc()
	case now.failed && !prev.up:
		r.up.WithLabelValues(key.job, key.instance).Set(1)
	}
	if (!known && !up) || (known && prev.up != up) {
		r.send(transition{key: key, node: ls.Get(NodeLabel), up: up, err: commitErr})
	}
}

// committed records the outcome of a commit that carried scrape reports.
func (r *recorder) committed(err error) {
	if err != nil {
		r.commitFailures.Inc()
	}
	r.mu.Lock()
	r.commitErr = err
	r.mu.Unlock()
}

// ratesReady fails while a target of job can answer no rate yet: an
// active target (instances, from the scrape manager) not scraped yet, or
// one up with fewer than two stored scrapes. A target that is down does
// not hold readiness back: it may stay down for good.
func (r *recorder) ratesReady(job string, instances []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	waiting := 0
	var example string
	for _, inst := range instances {
		st, seen := r.state[targetKey{job: job, instance: inst}]
		if !seen || (st.up && st.stored < 2) {
			waiting++
			example = inst
		}
	}
	if waiting > 0 {
		return fmt.Errorf("job %s: %d of %d targets (e.g. %s) have fewer than the two stored scrapes a rate needs", job, waiting, len(instances), example)
	}
	return nil
}

// checkCommits fails while the last commit of a scrape failed.
func (r *recorder) checkCommits() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.commitErr != nil {
		return fmt.Errorf("scrapes cannot be stored: %w", r.commitErr)
	}
	return nil
}

func (r *recorder) forget(key targetKey, node string) {
	r.mu.Lock()
	st, known := r.state[key]
	delete(r.state, key)
	r.mu.Unlock()
	if st.failed {
		r.errors.DeleteLabelValues(key.job, key.instance)
		r.up.DeleteLabelValues(key.job, key.instance)
	}
	if known {
		r.send(transition{key: key, node: node, gone: true})
	}
}

func (r *recorder) send(t transition) {
	select {
	case r.transitions <- t:
	default: // a burst of transitions; the metrics still count them
	}
}

func (r *recorder) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case t := <-r.transitions:
			attrs := []any{"job", t.key.job, "target", t.key.instance}
			if t.node != "" {
				attrs = append(attrs, "node", t.node)
			}
			switch {
			case t.gone:
				r.logger.Info("Target removed", attrs...)
			case t.up:
				r.logger.Info("Target scrapes again", attrs...)
			default:
				err := t.err
				if err == nil && r.reason != nil {
					err = r.reason(t.key.job, t.key.instance)
				}
				r.logger.Error("Target scrape failing; its series are marked stale until it recovers", append(attrs, "err", err)...)
			}
		}
	}
}

type recordingAppendable struct {
	app storage.AppendableV2
	r   *recorder
}

func (a recordingAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &recordingAppender{AppenderV2: a.app.AppenderV2(ctx), r: a.r}
}

type recordingAppender struct {
	storage.AppenderV2
	r       *recorder
	pending []pendingReport
}

type pendingReport struct {
	ls labels.Labels
	v  float64
}

func (a *recordingAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	if h == nil && fh == nil && ls.Get(model.MetricNameLabel) == scrapeHealthMetric {
		a.pending = append(a.pending, pendingReport{ls: ls, v: v})
	}
	return a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
}

// Commit records the reports once the commit is done, so a rolled-back
// append counts nothing. A failed commit stored nothing of the scrape, up
// included: Prometheus still counts the target healthy, so the gateway
// records it down, with the commit's error, and the failure fails /readyz
// until a commit succeeds.
func (a *recordingAppender) Commit() error {
	err := a.AppenderV2.Commit()
	for _, p := range a.pending {
		v := p.v
		if err != nil && !value.IsStaleNaN(v) {
			v = 0
		}
		a.r.observe(p.ls, v, err)
	}
	if len(a.pending) > 0 {
		a.r.committed(err)
	}
	a.pending = a.pending[:0]
	return err
}

func (a *recordingAppender) Rollback() error {
	a.pending = a.pending[:0]
	return a.AppenderV2.Rollback()
}
