package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

// errorKind gives a context error the kind promql gives it when the engine
// itself notices: a deadline is promql.ErrQueryTimeout and a cancellation
// promql.ErrQueryCanceled, wherever they strike. The engine checks its
// context between steps, but a deadline that strikes inside storage (while
// series are expanded, or in a label lookup) comes back as a plain wrapped
// context error, which Prometheus' API answers as a 422 "execution" error and
// our APIs would answer as a server fault. Other errors pass unchanged.
func errorKind(err error) error {
	var (
		eqt promql.ErrQueryTimeout
		eqc promql.ErrQueryCanceled
	)
	switch {
	case err == nil, errors.As(err, &eqt), errors.As(err, &eqc):
		return err
	case errors.Is(err, context.DeadlineExceeded):
		return promql.ErrQueryTimeout(err.Error())
	case errors.Is(err, context.Canceled):
		return promql.ErrQueryCanceled(err.Error())
	}
	return err
}

// kindEngine is the shared engine as the query API sees it: every query's
// error goes through errorKind.
type kindEngine struct{ promql.QueryEngine }

var _ promql.QueryEngine = kindEngine{}

func (e kindEngine) NewInstantQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, ts time.Time) (promql.Query, error) {
	qry, err := e.QueryEngine.NewInstantQuery(ctx, q, opts, qs, ts)
	if err != nil {
		return nil, errorKind(err)
	}
	return kindQuery{qry}, nil
}

func (e kindEngine) NewRangeQuery(ctx context.Context, q storage.Queryable, opts promql.QueryOpts, qs string, start, end time.Time, interval time.Duration) (promql.Query, error) {
	qry, err := e.QueryEngine.NewRangeQuery(ctx, q, opts, qs, start, end, interval)
	if err != nil {
		return nil, errorKind(err)
	}
	return kindQuery{qry}, nil
}

type kindQuery struct{ promql.Query }

func (q kindQuery) Exec(ctx context.Context) *promql.Result {
	res := q.Query.Exec(ctx)
	if res != nil {
		res.Err = errorKind(res.Err)
	}
	return res
}

// kindQueryable is the TSDB as the query API's index endpoints (series,
// labels, label values) read it, with errors through errorKind.
type kindQueryable struct {
	storage.SampleAndChunkQueryable
}

func (q kindQueryable) Querier(mint, maxt int64) (storage.Querier, error) {
	inner, err := q.SampleAndChunkQueryable.Querier(mint, maxt)
	if err != nil {
		return nil, errorKind(err)
	}
	return kindQuerier{inner}, nil
}

type kindQuerier struct{ storage.Querier }

func (q kindQuerier) Select(ctx context.Context, sortSeries bool, hints *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	return kindSeriesSet{q.Querier.Select(ctx, sortSeries, hints, ms...)}
}

func (q kindQuerier) LabelValues(ctx context.Context, name string, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	vs, ws, err := q.Querier.LabelValues(ctx, name, hints, ms...)
	return vs, ws, errorKind(err)
}

func (q kindQuerier) LabelNames(ctx context.Context, hints *storage.LabelHints, ms ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	ns, ws, err := q.Querier.LabelNames(ctx, hints, ms...)
	return ns, ws, errorKind(err)
}

type kindSeriesSet struct{ storage.SeriesSet }

func (s kindSeriesSet) Err() error { return errorKind(s.SeriesSet.Err()) }

// BackendError is a remote query engine (scale-out mode) that cannot be
// reached or fails as a server: the metrics APIs answer it with a 503
// naming Backend.
type BackendError struct {
	Backend string
	Err     error
}

func (e *BackendError) Error() string {
	return fmt.Sprintf("query backend %s unavailable: %v", e.Backend, e.Err)
}

func (e *BackendError) Unwrap() error { return e.Err }
