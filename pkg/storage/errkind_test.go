package storage

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/annotations"
)

func TestErrorKind(t *testing.T) {
	other := errors.New("disk on fire")
	for _, tc := range []struct {
		name    string
		err     error
		timeout bool
		cancel  bool
	}{
		{"nil", nil, false, false},
		{"deadline while expanding series", fmt.Errorf("expanding series: %w", context.DeadlineExceeded), true, false},
		{"deadline in a label lookup", fmt.Errorf("label values: %w", context.DeadlineExceeded), true, false},
		{"engine's own timeout", promql.ErrQueryTimeout("query timed out in expression evaluation"), true, false},
		{"cancellation while expanding series", fmt.Errorf("expanding series: %w", context.Canceled), false, true},
		{"engine's own cancellation", promql.ErrQueryCanceled("context canceled"), false, true},
		{"anything else", other, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := errorKind(tc.err)
			var eqt promql.ErrQueryTimeout
			var eqc promql.ErrQueryCanceled
			if errors.As(got, &eqt) != tc.timeout || errors.As(got, &eqc) != tc.cancel {
				t.Errorf("errorKind(%v) = %#v: timeout %v, canceled %v; want %v, %v", tc.err, got, errors.As(got, &eqt), errors.As(got, &eqc), tc.timeout, tc.cancel)
			}
			if !tc.timeout && !tc.cancel && !errors.Is(got, tc.err) && got != tc.err {
				t.Errorf("errorKind(%v) = %v, want it unchanged", tc.err, got)
			}
			if tc.err != nil && got.Error() == "" {
				t.Errorf("errorKind(%v) lost the message", tc.err)
			}
		})
	}
}

// expiringQueryable fails every read the way the TSDB does when the
// request's deadline passes while it reads: a plain wrapped context error.
type expiringQueryable struct {
	promstorage.SampleAndChunkQueryable
}

func (expiringQueryable) Querier(int64, int64) (promstorage.Querier, error) {
	return expiringQuerier{}, nil
}

type expiringQuerier struct{}

var errExpired = fmt.Errorf("read postings: %w", context.DeadlineExceeded)

func (expiringQuerier) Select(context.Context, bool, *promstorage.SelectHints, ...*labels.Matcher) promstorage.SeriesSet {
	return promstorage.ErrSeriesSet(errExpired)
}

func (expiringQuerier) LabelValues(context.Context, string, *promstorage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, errExpired
}

func (expiringQuerier) LabelNames(context.Context, *promstorage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, errExpired
}

func (expiringQuerier) Close() error { return nil }

// TestDeadlineInStorageIsTimeout is the query API's path: the engine and
// the index reads it is given. Before errorKind, a deadline that struck
// while series were expanded came back as "expanding series: context
// deadline exceeded", which Prometheus' API answers 422 "execution".
func TestDeadlineInStorageIsTimeout(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	var eqt promql.ErrQueryTimeout

	q, err := s.Engine().NewInstantQuery(ctx, expiringQueryable{}, nil, `sum(rate(x[5m]))`, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if res := q.Exec(ctx); !errors.As(res.Err, &eqt) {
		t.Errorf("instant query: %v, want a promql.ErrQueryTimeout", res.Err)
	}
	q.Close()
	q, err = s.Engine().NewRangeQuery(ctx, expiringQueryable{}, nil, `x`, time.Now().Add(-time.Hour), time.Now(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if res := q.Exec(ctx); !errors.As(res.Err, &eqt) {
		t.Errorf("range query: %v, want a promql.ErrQueryTimeout", res.Err)
	}
	q.Close()

	idx, err := kindQueryable{expiringQueryable{}}.Querier(0, 1)
	if err != nil {
		t.Fatal(err)
	}
	if set := idx.Select(ctx, false, nil); set.Next() || !errors.As(set.Err(), &eqt) {
		t.Errorf("series: %v, want a promql.ErrQueryTimeout", set.Err())
	}
	if _, _, err := idx.LabelNames(ctx, nil); !errors.As(err, &eqt) {
		t.Errorf("labels: %v, want a promql.ErrQueryTimeout", err)
	}
	if _, _, err := idx.LabelValues(ctx, "job", nil); !errors.As(err, &eqt) {
		t.Errorf("label values: %v, want a promql.ErrQueryTimeout", err)
	}
}
