package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb"
	"github.com/prometheus/prometheus/util/compression"
)

// LookbackDelta is how far back an instant selector looks for a sample:
// Prometheus' default.
const LookbackDelta = 5 * time.Minute

// headStripes is the TSDB head's series-map stripe count (see Open).
const headStripes = 1024

// ErrNotReady is returned by Querier methods while the TSDB is not open.
var ErrNotReady = errors.New("storage not ready")

// Options configure the embedded TSDB and the shared engine.
type Options struct {
	// Path is the TSDB directory; its WAL survives restarts.
	Path string
	// Retention is how long samples are kept.
	Retention time.Duration
	// RetentionBytes, when positive, bounds the TSDB on disk: the oldest
	// blocks are deleted first.
	RetentionBytes int64
	// QueryTimeout bounds every evaluation, whatever the caller's context says.
	QueryTimeout time.Duration
	// MaxSamples bounds the samples one evaluation may load into memory.
	MaxSamples int
	// MaxConcurrentQueries bounds evaluations running at once; further callers wait.
	MaxConcurrentQueries int
	// MinFreeBytes, when positive, is the free space the filesystem holding
	// Path must keep: below it Open refuses and commits fail (see reserve).
	MinFreeBytes int64
	// WALCompression compresses the write-ahead log's records: "snappy"
	// (the default, as Prometheus'), "zstd" or "none". A WAL written with
	// one is read with any other.
	WALCompression compression.Type
}

// DefaultOptions returns the options used when a field is left zero.
func DefaultOptions() Options {
	return Options{
		Retention:    6 * time.Hour,
		QueryTimeout: 30 * time.Second,
		// 22 MB of samples per evaluation: the shipped pod's budget
		// (server.MemoryBudget) has room for eight at once beside 32 MiB
		// of pod bodies in flight.
		MaxSamples:           1_400_000,
		MaxConcurrentQueries: 4,
		// Prometheus' default. Its encoder keeps a 32 KB table on the
		// stack, so its commits run on the committer's goroutines, not on
		// the scrape loops'. zstd writes 0.82 of its bytes for kubelet
		// records but takes 30-70 µs to compress one against snappy's
		// 4-6 µs (docs/benchmarks.md, "The WAL's compression, again").
		WALCompression: compression.Snappy,
	}
}

// CheckWALCompression returns an error naming the valid choices when t is
// not one of them ("" is the default).
func CheckWALCompression(t compression.Type) error {
	if t == "" || slices.Contains(compression.Types(), t) {
		return nil
	}
	return fmt.Errorf("WAL compression %q: want one of %s", t, strings.Join(compression.Types(), ", "))
}

// QueryOptions change how one evaluation reads storage.
type QueryOptions struct {
	// DropStale hides, inside range selectors, every sample up to and including
	// a series' newest staleness marker, and the whole series when that marker
	// is its newest sample. PromQL skips markers inside range selectors, so
	// without this a series that vanished from its target (a deleted pod)
	// would still answer for the length of the range.
	DropStale bool
}

// Querier evaluates PromQL on the shared engine. Implementations are safe for
// concurrent use. The returned value is owned by the caller. Time bounds of
// range selectors are those of PromQL: left-open, right-closed.
type Querier interface {
	// Instant evaluates expr at ts. It returns ErrNotReady before the TSDB is
	// open, a *parser.ParseErrors wrapped in a BadQueryError for bad input,
	// and promql's ErrQueryTimeout/ErrQueryCanceled otherwise.
	Instant(ctx context.Context, expr string, ts time.Time, o QueryOptions) (parser.Value, error)
	// Range evaluates expr from start to end (inclusive) every step.
	Range(ctx context.Context, expr string, start, end time.Time, step time.Duration, o QueryOptions) (parser.Value, error)
}

// BadQueryError marks an expression that does not parse or type-check: the
// caller's fault, never the storage's.
type BadQueryError struct{ Err error }

func (e *BadQueryError) Error() string { return "bad query: " + e.Err.Error() }
func (e *BadQueryError) Unwrap() error { return e.Err }

// Storage is the embedded TSDB and the shared engine.
type Storage struct {
	opts   Options
	db     *tsdb.DB
	engine *promql.Engine
	sem    chan struct{}
	ready  atomic.Bool

	tailsMu       sync.Mutex
	tails         []*Tail
	tailAppenders sync.Pool // of *tailAppender

	// reserve, when set, fails commits on a nearly full filesystem.
	reserve *reserve
	// commits, when set, runs the commits that compress WAL records with
	// snappy (committer).
	commits *committer
}

var _ Querier = (*Storage)(nil)

// Open opens (or creates) the TSDB at o.Path, replaying its WAL, and builds
// the engine. Metrics of both go to reg, which must not be shared with
// another Storage.
func Open(o Options, logger *slog.Logger, reg prometheus.Registerer) (*Storage, error) {
	d := DefaultOptions()
	if o.Retention <= 0 {
		o.Retention = d.Retention
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = d.QueryTimeout
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = d.MaxSamples
	}
	if o.MaxConcurrentQueries <= 0 {
		o.MaxConcurrentQueries = d.MaxConcurrentQueries
	}
	if o.WALCompression == "" {
		o.WALCompression = d.WALCompression
	}
	if err := CheckWALCompression(o.WALCompression); err != nil {
		return nil, err
	}
	if o.Path == "" {
		return nil, errors.New("storage path is empty")
	}
	if err := os.MkdirAll(o.Path, 0o750); err != nil {
		return nil, fmt.Errorf("create storage dir %s: %w", o.Path, err)
	}
	topts := tsdbOptions(o)
	var res *reserve
	if o.MinFreeBytes > 0 {
		res = &reserve{path: o.Path, min: uint64(o.MinFreeBytes), free: freeBytes}
		if err := res.check(); err != nil {
			return nil, fmt.Errorf("open tsdb: %w", err)
		}
	}
	tlog := logger.With("component", "tsdb")
	if err := quarantineCorruptBlocks(o.Path, tlog); err != nil {
		return nil, fmt.Errorf("open tsdb %s: %w", o.Path, err)
	}
	db, err := tsdb.Open(o.Path, tlog, reg, topts, nil)
	if err != nil {
		return nil, fmt.Errorf("open tsdb %s: %w", o.Path, err)
	}
	p := parser.NewParser(ParserOptions())
	engine := promql.NewEngine(promql.EngineOpts{
		Logger:     logger.With("component", "promql"),
		Reg:        reg,
		MaxSamples: o.MaxSamples,
		Timeout:    o.QueryTimeout,
		// Subqueries without a step use one minute, as Prometheus' default
		// global evaluation interval does.
		NoStepSubqueryIntervalFn: func(int64) int64 { return time.Minute.Milliseconds() },
		LookbackDelta:            LookbackDelta,
		EnableAtModifier:         true,
		EnableNegativeOffset:     true,
		Parser:                   p,
	})
	s := &Storage{opts: o, db: db, engine: engine, sem: make(chan struct{}, o.MaxConcurrentQueries), reserve: res}
	if o.WALCompression == compression.Snappy {
		s.commits = newCommitter(runtime.GOMAXPROCS(0))
	}
	s.ready.Store(true)
	return s, nil
}

// tsdbOptions are the TSDB's options for o, defaults applied.
func tsdbOptions(o Options) *tsdb.Options {
	topts := tsdb.DefaultOptions()
	topts.RetentionDuration = o.Retention.Milliseconds()
	topts.MaxBytes = o.RetentionBytes
	// Blocks never need to be longer than a tenth of retention; the default
	// (31 days) would keep short retentions in memory-mapped head chunks.
	if m := o.Retention.Milliseconds() / 10; m < topts.MaxBlockDuration {
		topts.MaxBlockDuration = max(m, topts.MinBlockDuration)
	}
	topts.WALCompression = o.WALCompression
	// The head's series map is split in stripes, each with two maps and two
	// padded locks, allocated up front: 4.9 MB at the default 16384, sized
	// for many cores appending at once. A gateway has a few cores and at
	// most its head-series cap; 1024 stripes keep contention as low there.
	topts.StripeSize = headStripes
	// Full head chunks are written out through this buffer: 4 MiB by
	// default, held for good. The gateway writes a few kilobytes a second
	// (a chunk per series every 120 samples).
	topts.HeadChunksWriteBufferSize = 256 << 10
	// Isolation keeps a query from seeing part of a scrape still being
	// committed, at the cost of a ring of append IDs per series (3 MB at
	// 22,500 series) and bookkeeping on every append. The gateway's
	// answers are latest values and rates per series, which a half-seen
	// commit cannot make inconsistent; Prometheus' agent mode runs without
	// it too.
	topts.IsolationDisabled = true
	return topts
}

// Appendable is where scrapers write: the TSDB, whose commits also keep
// every Tail up to date. Its appenders implement storage.GetRef.
func (s *Storage) Appendable() storage.AppendableV2 { return tailAppendable{s} }

// Queryable gives raw read access to the TSDB for callers that need series
// or label listings rather than evaluation (label index, discovery).
func (s *Storage) Queryable() storage.Queryable { return s.db }

// HeadSeries is the number of series in the in-memory head.
func (s *Storage) HeadSeries() uint64 { return s.db.Head().NumSeries() }

// Ready reports whether the TSDB is open.
func (s *Storage) Ready() error {
	if !s.ready.Load() {
		return ErrNotReady
	}
	return nil
}

// Close flushes and closes the TSDB. Queries after Close return ErrNotReady.
func (s *Storage) Close() error {
	s.ready.Store(false)
	if s.commits != nil {
		s.commits.close()
	}
	return s.db.Close()
}

// Instant implements Querier.
func (s *Storage) Instant(ctx context.Context, expr string, ts time.Time, o QueryOptions) (parser.Value, error) {
	return s.eval(ctx, o, func(q storage.Queryable) (promql.Query, error) {
		return s.engine.NewInstantQuery(ctx, q, nil, expr, ts)
	})
}

// Range implements Querier.
func (s *Storage) Range(ctx context.Context, expr string, start, end time.Time, step time.Duration, o QueryOptions) (parser.Value, error) {
	if step <= 0 {
		return nil, &BadQueryError{Err: errors.New("step must be positive")}
	}
	return s.eval(ctx, o, func(q storage.Queryable) (promql.Query, error) {
		return s.engine.NewRangeQuery(ctx, q, nil, expr, start, end, step)
	})
}

func (s *Storage) eval(ctx context.Context, o QueryOptions, newQuery func(storage.Queryable) (promql.Query, error)) (parser.Value, error) {
	if err := s.Ready(); err != nil {
		return nil, err
	}
	select {
	case s.sem <- struct{}{}:
		defer func() { <-s.sem }()
	case <-ctx.Done():
		return nil, errorKind(ctx.Err())
	}
	var q storage.Queryable = s.db
	if o.DropStale {
		q = dropStaleQueryable{q}
	}
	qry, err := newQuery(q)
	if err != nil {
		return nil, &BadQueryError{Err: err}
	}
	defer qry.Close()
	res := qry.Exec(ctx)
	if res.Err != nil {
		return nil, errorKind(res.Err)
	}
	if m, ok := res.Value.(promql.Matrix); ok {
		// Close hands a matrix's point slices back to the engine's pools,
		// where the next query overwrites them: the caller gets a copy.
		return cloneMatrix(m), nil
	}
	return res.Value, nil
}

func cloneMatrix(m promql.Matrix) promql.Matrix {
	out := make(promql.Matrix, len(m))
	for i, s := range m {
		out[i] = promql.Series{Metric: s.Metric, DropName: s.DropName}
		if len(s.Floats) > 0 {
			out[i].Floats = append([]promql.FPoint(nil), s.Floats...)
		}
		if len(s.Histograms) > 0 {
			out[i].Histograms = append([]promql.HPoint(nil), s.Histograms...)
		}
	}
	return out
}

// Options are the options in effect, defaults filled in.
func (s *Storage) Options() Options { return s.opts }

// Engine is the shared PromQL engine, for the Prometheus-compatible query
// API. Evaluations through it bypass the Querier's concurrency bound: the
// caller brings its own. A deadline or cancellation is reported as
// promql.ErrQueryTimeout or ErrQueryCanceled wherever it strikes.
func (s *Storage) Engine() promql.QueryEngine { return kindEngine{s.engine} }

// SampleAndChunkQueryable gives the query API raw reads, including the chunk
// reads of remote read. Deadlines are reported as Engine reports them.
func (s *Storage) SampleAndChunkQueryable() storage.SampleAndChunkQueryable {
	return kindQueryable{s.db}
}

// ExemplarQueryable answers exemplar queries. Exemplar storage is off, so
// it finds none; it is there so that /query_exemplars answers an empty list.
func (s *Storage) ExemplarQueryable() storage.ExemplarQueryable { return s.db }

// Stats reports the head's cardinality statistics for the query API's
// /status/tsdb; the admin operations beside them are refused.
func (s *Storage) Stats() *AdminStats { return &AdminStats{db: s.db} }

// ErrAdminDisabled is returned by every mutating admin operation.
var ErrAdminDisabled = errors.New("TSDB admin operations are disabled")

// AdminStats answers the read-only TSDB status calls of Prometheus' API and
// refuses its admin operations. It is safe for concurrent use.
type AdminStats struct{ db *tsdb.DB }

// Stats returns head cardinality by label name, top limit entries.
func (a *AdminStats) Stats(statsByLabelName string, limit int) (*tsdb.Stats, error) {
	return a.db.Head().Stats(statsByLabelName, limit), nil
}

// WALReplayStatus reports the progress of the last WAL replay.
func (a *AdminStats) WALReplayStatus() (tsdb.WALReplayStatus, error) {
	// Open returns only once the replay is done.
	return tsdb.WALReplayStatus{}, nil
}

// BlockMetas lists the persisted blocks.
func (a *AdminStats) BlockMetas() ([]tsdb.BlockMeta, error) { return a.db.BlockMetas(), nil }

// CleanTombstones is refused.
func (a *AdminStats) CleanTombstones() error { return ErrAdminDisabled }

// Delete is refused.
func (a *AdminStats) Delete(context.Context, int64, int64, ...*labels.Matcher) error {
	return ErrAdminDisabled
}

// Snapshot is refused.
func (a *AdminStats) Snapshot(string, bool) error { return ErrAdminDisabled }
