package backend

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/util/annotations"
	"github.com/prometheus/prometheus/util/stats"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// errNoChunks: the engine's API lists series and evaluates PromQL; it does
// not hand out raw samples (remote read is not part of what we ask of it).
var errNoChunks = errors.New("the query backend serves series and PromQL, not raw samples")

// Queryable reads the engine's index through its series and label APIs:
// the series Select returns carry labels and no samples (hints.Func
// "series" is what discovery and the query API's index endpoints ask).
func (e *Engine) Queryable() promstorage.Queryable { return indexQueryable{e} }

// SampleAndChunkQueryable is Queryable for the query API; its chunk
// querier fails (no remote read).
func (e *Engine) SampleAndChunkQueryable() promstorage.SampleAndChunkQueryable {
	return indexQueryable{e}
}

type indexQueryable struct{ e *Engine }

func (q indexQueryable) Querier(mint, maxt int64) (promstorage.Querier, error) {
	return &indexQuerier{e: q.e, start: time.UnixMilli(mint), end: time.UnixMilli(maxt)}, nil
}

func (q indexQueryable) ChunkQuerier(int64, int64) (promstorage.ChunkQuerier, error) {
	return nil, errNoChunks
}

type indexQuerier struct {
	e          *Engine
	start, end time.Time
}

// selector renders matchers as a PromQL series selector.
func selector(ms []*labels.Matcher) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		parts[i] = m.String()
	}
	return "{" + strings.Join(parts, ",") + "}"
}

func selectors(ms []*labels.Matcher) []string {
	if len(ms) == 0 {
		return nil
	}
	return []string{selector(ms)}
}

func (q *indexQuerier) Select(ctx context.Context, sortSeries bool, _ *promstorage.SelectHints, ms ...*labels.Matcher) promstorage.SeriesSet {
	if err := q.e.Ready(); err != nil {
		return promstorage.ErrSeriesSet(err)
	}
	ctx, cancel := q.e.withTimeout(ctx)
	defer cancel()
	sets, _, _, err := q.e.api.Series(ctx, []string{selector(q.e.withScope(ms))}, q.start, q.end)
	if err != nil {
		return promstorage.ErrSeriesSet(q.e.classify(ctx, err))
	}
	out := make([]promstorage.Series, len(sets))
	for i, s := range sets {
		out[i] = labelsOnly{toLabelsSet(s)}
	}
	if sortSeries {
		sortByLabels(out)
	}
	return &seriesSet{series: out, i: -1}
}

func (q *indexQuerier) LabelValues(ctx context.Context, name string, _ *promstorage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	if err := q.e.Ready(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := q.e.withTimeout(ctx)
	defer cancel()
	vals, _, _, err := q.e.api.LabelValues(ctx, name, selectors(q.e.withScope(ms)), q.start, q.end)
	if err != nil {
		return nil, nil, q.e.classify(ctx, err)
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		out[i] = string(v)
	}
	return out, nil, nil
}

func (q *indexQuerier) LabelNames(ctx context.Context, _ *promstorage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	if err := q.e.Ready(); err != nil {
		return nil, nil, err
	}
	ctx, cancel := q.e.withTimeout(ctx)
	defer cancel()
	names, _, _, err := q.e.api.LabelNames(ctx, selectors(q.e.withScope(ms)), q.start, q.end)
	if err != nil {
		return nil, nil, q.e.classify(ctx, err)
	}
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = string(n)
	}
	return out, nil, nil
}

func (q *indexQuerier) Close() error { return nil }

type labelsOnly struct{ ls labels.Labels }

func (s labelsOnly) Labels() labels.Labels                        { return s.ls }
func (s labelsOnly) Iterator(chunkenc.Iterator) chunkenc.Iterator { return chunkenc.NewNopIterator() }

type seriesSet struct {
	series []promstorage.Series
	i      int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSet) At() promstorage.Series            { return s.series[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

func sortByLabels(ss []promstorage.Series) {
	slices.SortFunc(ss, func(a, b promstorage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
}

// QueryEngine is the engine as the Prometheus-compatible API uses it: the
// API's queryable argument is ignored, the expression goes to the engine.
func (e *Engine) QueryEngine() promql.QueryEngine { return queryEngine{e} }

type queryEngine struct{ e *Engine }

var exprParser = parser.NewParser(storage.ParserOptions())

func (qe queryEngine) NewInstantQuery(_ context.Context, _ promstorage.Queryable, _ promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	expr, err := exprParser.ParseExpr(qs)
	if err != nil {
		return nil, err
	}
	return &query{e: qe.e, qs: qs, stmt: &parser.EvalStmt{Expr: expr, Start: ts, End: ts}, start: ts, end: ts}, nil
}

func (qe queryEngine) NewRangeQuery(_ context.Context, _ promstorage.Queryable, _ promql.QueryOpts, qs string, start, end time.Time, step time.Duration) (promql.Query, error) {
	expr, err := exprParser.ParseExpr(qs)
	if err != nil {
		return nil, err
	}
	return &query{e: qe.e, qs: qs, stmt: &parser.EvalStmt{Expr: expr, Start: start, End: end, Interval: step}, start: start, end: end, step: step}, nil
}

// query is one evaluation on the engine; step 0 is an instant query.
type query struct {
	e          *Engine
	qs         string
	stmt       parser.Statement
	start, end time.Time
	step       time.Duration
	cancel     context.CancelFunc
}

func (q *query) Exec(ctx context.Context) *promql.Result {
	ctx, q.cancel = context.WithCancel(ctx)
	defer q.cancel()
	var (
		v   parser.Value
		err error
	)
	if q.step == 0 {
		v, err = q.e.Instant(ctx, q.qs, q.start, storage.QueryOptions{})
	} else {
		v, err = q.e.Range(ctx, q.qs, q.start, q.end, q.step, storage.QueryOptions{})
	}
	var be *storage.BackendError
	if errors.As(err, &be) {
		err = promql.ErrStorage{Err: be}
	}
	return &promql.Result{Value: v, Err: err}
}

func (q *query) Close()                      {}
func (q *query) Statement() parser.Statement { return q.stmt }
func (q *query) Stats() *stats.Statistics {
	return &stats.Statistics{Timers: stats.NewQueryTimers()}
}
func (q *query) String() string { return q.qs }
func (q *query) Cancel() {
	if q.cancel != nil {
		q.cancel()
	}
}
