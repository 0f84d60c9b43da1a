package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	promscrape "github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
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
type RemoteWrite struct {
	rs      *remote.Storage
	scraper atomic.Pointer[promscrape.Manager]
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
	return rw, nil
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
// (the samples themselves reach them through the WAL).
func (rw *RemoteWrite) Appendable(primary storage.AppendableV2) storage.AppendableV2 {
	return teeAppendable{primary: primary, secondary: rw.rs}
}

// Close flushes the queues for up to a minute and stops them. Call it
// before the TSDB is closed.
func (rw *RemoteWrite) Close() error { return rw.rs.Close() }

type teeAppendable struct {
	primary, secondary storage.AppendableV2
}

func (t teeAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return &teeAppender{AppenderV2: t.primary.AppenderV2(ctx), secondary: t.secondary.AppenderV2(ctx)}
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

// GetRef passes the primary's series lookup through (the series cap uses
// it), when it has one.
func (a *teeAppender) GetRef(ls labels.Labels, hash uint64) (storage.SeriesRef, labels.Labels) {
	if g, ok := a.AppenderV2.(storage.GetRef); ok {
		return g.GetRef(ls, hash)
	}
	return 0, labels.EmptyLabels()
}
