package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promscrape "github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
	"github.com/prometheus/prometheus/tsdb/agent"
)

// remoteFlushDeadline is how long Close waits for the queues to send what
// they hold, as Prometheus' --storage.remote.flush-deadline.
const remoteFlushDeadline = time.Minute

// RemoteWrite ships every sample committed to the TSDB to Prometheus
// remote-write endpoints with Prometheus' own queue manager: it tails the
// TSDB's write-ahead log, so an endpoint that is down for minutes loses
// nothing (the queues resume from the WAL, with retries and backoff) as
// long as the WAL still holds the samples (until the head is compacted,
// at least an hour).
//
// Built by NewRemoteWriteAgent, it tails a write-ahead log of its own
// instead (Prometheus' agent mode), and only the local jobs' series are
// also kept in the TSDB: see there.
type RemoteWrite struct {
	rs      *remote.Storage
	scraper atomic.Pointer[promscrape.Manager]

	// agent, when set, is the write-ahead log the queues read; every
	// sample is appended to it, and to the TSDB only when local says so.
	agent       *agent.DB
	local       func(job string) bool
	agentSeries prometheus.Gauge
}

// NewRemoteWrite starts the queues of cfg.RemoteWriteConfigs (with
// cfg.GlobalConfig's external labels) over s's WAL. Their metrics go to
// reg. Appenders of the scrapers must go through Appendable, and
// SetScrapeManager must be called once scraping is built (for metadata).
func (s *Storage) NewRemoteWrite(cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*RemoteWrite, error) {
	if len(cfg.RemoteWriteConfigs) == 0 {
		return nil, errors.New("remote_write: no endpoints")
	}
	rw := &RemoteWrite{}
	rw.rs = remote.NewStorage(logger.With("component", "remote"), reg, s.db.StartTime, s.opts.Path, remoteFlushDeadline, rw, false)
	if err := rw.rs.ApplyConfig(cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("remote_write: %w", err), rw.rs.Close())
	}
	s.db.SetWriteNotified(rw.rs)
	return rw, nil
}

// AgentDir is the directory, inside the TSDB's, of the write-ahead log of
// NewRemoteWriteAgent. The TSDB only reads directories named as blocks.
const AgentDir = "agent"

// agentActiveSeries is the agent's gauge of the series it holds.
const agentActiveSeries = "prometheus_agent_active_series"

// NewRemoteWriteAgent is NewRemoteWrite for a gateway whose queries go to
// the engine it writes to: the TSDB then only needs the series the
// gateway answers from itself (metrics.k8s.io, its own metrics, the
// autoscaling history). Every sample goes to a write-ahead log of its own
// under AgentDir, Prometheus' agent-mode storage (tsdb/agent), which the
// queues read and which drops a series once it has been sent and is
// no longer scraped; only samples of jobs for which local is true, and
// samples appended outside a scrape (the autoscaling recorder), are also
// appended to the TSDB. The agent's own metrics are registered with the
// prefix "agent_", since its write-ahead log's would collide with the
// TSDB's.
func (s *Storage) NewRemoteWriteAgent(cfg *config.Config, local func(job string) bool, logger *slog.Logger, reg prometheus.Registerer) (*RemoteWrite, error) {
	if len(cfg.RemoteWriteConfigs) == 0 {
		return nil, errors.New("remote_write: no endpoints")
	}
	rw := &RemoteWrite{local: local}
	dir := filepath.Join(s.opts.Path, AgentDir)
	startTime := func() (int64, error) { return int64(model.Latest), nil }
	rw.rs = remote.NewStorage(logger.With("component", "remote"), reg, startTime, dir, remoteFlushDeadline, rw, false)
	opts := agent.DefaultOptions()
	opts.WALCompression = s.opts.WALCompression
	opts.StripeSize = headStripes
	opts.TruncateFrequency = agentTruncateFrequency
	areg := &gaugeCatcher{Registerer: prometheus.WrapRegistererWithPrefix("agent_", reg), name: agentActiveSeries}
	db, err := agent.Open(logger.With("component", "agent"), areg, rw.rs, dir, opts)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("remote_write: open write-ahead log %s: %w", dir, err), rw.rs.Close())
	}
	if areg.got == nil {
		return nil, errors.Join(fmt.Errorf("remote_write: the agent registered no %s gauge", agentActiveSeries), rw.rs.Close(), db.Close())
	}
	rw.agent, rw.agentSeries = db, areg.got
	db.SetWriteNotified(rw.rs)
	if err := rw.rs.ApplyConfig(cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("remote_write: %w", err), rw.rs.Close(), db.Close())
	}
	return rw, nil
}

// agentTruncateFrequency is how often the agent drops series that stopped
// (and were sent) and checkpoints its log: a quarter of Prometheus' 2h, so
// that the series of pods gone hold memory for half an hour, not two.
const agentTruncateFrequency = 30 * time.Minute

// AgentSeries is the number of series the agent's log holds in memory; 0
// without an agent.
func (rw *RemoteWrite) AgentSeries() uint64 {
	if rw == nil || rw.agentSeries == nil {
		return 0
	}
	var m dto.Metric
	if err := rw.agentSeries.Write(&m); err != nil {
		return 0
	}
	return uint64(max(m.GetGauge().GetValue(), 0))
}

// gaugeCatcher registers with Registerer and keeps the gauge registered
// under name: the agent counts its series in a gauge and nowhere else.
type gaugeCatcher struct {
	prometheus.Registerer
	name string
	got  prometheus.Gauge
}

func (c *gaugeCatcher) Register(col prometheus.Collector) error {
	c.catch(col)
	return c.Registerer.Register(col)
}

func (c *gaugeCatcher) MustRegister(cols ...prometheus.Collector) {
	for _, col := range cols {
		c.catch(col)
	}
	c.Registerer.MustRegister(cols...)
}

func (c *gaugeCatcher) catch(col prometheus.Collector) {
	g, ok := col.(prometheus.Gauge)
	if !ok {
		return
	}
	// A Desc's name has no getter; its String starts with it.
	if strings.HasPrefix(g.Desc().String(), `Desc{fqName: "`+c.name+`"`) {
		c.got = g
	}
}

// SetScrapeManager gives the metadata watchers the scrape manager.
func (rw *RemoteWrite) SetScrapeManager(m *promscrape.Manager) { rw.scraper.Store(m) }

// Get implements remote.ReadyScrapeManager.
func (rw *RemoteWrite) Get() (*promscrape.Manager, error) {
	if m := rw.scraper.Load(); m != nil {
		return m, nil
	}
	return nil, errors.New("scrape manager not ready")
}

// Appendable appends to primary and tells the queues the newest timestamp
// appended, which they compare with the newest sent to size themselves
// (the samples themselves reach them through the WAL). With an agent,
// scrapes of jobs that are not local go to the agent only, and the rest
// to primary and the agent.
func (rw *RemoteWrite) Appendable(primary storage.AppendableV2) storage.AppendableV2 {
	if rw.agent == nil {
		return teeAppendable{primary: primary, secondary: rw.rs}
	}
	shipped := teeAppendable{primary: rw.agent, secondary: rw.rs}
	return routeAppendable{local: teeAppendable{primary: primary, secondary: shipped}, shipped: shipped, isLocal: rw.local}
}

// Close flushes the queues for up to a minute and stops them, then closes
// the agent's log. Call it before the TSDB is closed.
func (rw *RemoteWrite) Close() error {
	err := rw.rs.Close()
	if rw.agent != nil {
		err = errors.Join(err, rw.agent.Close())
	}
	return err
}

// routeAppendable sends a scrape's samples to local when its job is local
// (or when the appends come from no scrape at all), else to shipped.
type routeAppendable struct {
	local, shipped storage.AppendableV2
	isLocal        func(job string) bool
}

func (r routeAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	if t, ok := promscrape.TargetFromContext(ctx); ok && !r.isLocal(t.GetValue(model.JobLabel)) {
		return r.shipped.AppenderV2(ctx)
	}
	return r.local.AppenderV2(ctx)
}

type teeAppendable struct {
	primary, secondary storage.AppendableV2
}

func (t teeAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	a := &teeAppender{AppenderV2: t.primary.AppenderV2(ctx), secondary: t.secondary.AppenderV2(ctx)}
	if g, ok := a.AppenderV2.(storage.GetRef); ok {
		return &teeGetRefAppender{teeAppender: a, getRef: g}
	}
	return a
}

// teeAppender is the primary's appender: its refs and errors are the
// answer. The secondary sees the samples the primary took.
type teeAppender struct {
	storage.AppenderV2
	secondary storage.AppenderV2
}

func (a *teeAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, o storage.AppendV2Options) (storage.SeriesRef, error) {
	ref, err := a.AppenderV2.Append(ref, ls, st, t, v, h, fh, o)
	if err == nil || ref != 0 {
		_, _ = a.secondary.Append(0, ls, st, t, v, h, fh, o)
	}
	return ref, err
}

func (a *teeAppender) Commit() error {
	err := a.AppenderV2.Commit()
	if err != nil {
		return errors.Join(err, a.secondary.Rollback())
	}
	return a.secondary.Commit()
}

func (a *teeAppender) Rollback() error {
	return errors.Join(a.AppenderV2.Rollback(), a.secondary.Rollback())
}

// teeGetRefAppender is a teeAppender whose primary looks series up (the
// TSDB's does, the agent's does not): the series cap uses it.
type teeGetRefAppender struct {
	*teeAppender
	getRef storage.GetRef
}

func (a *teeGetRefAppender) GetRef(ls labels.Labels, hash uint64) (storage.SeriesRef, labels.Labels) {
	return a.getRef.GetRef(ls, hash)
}
