package custom

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// eval runs q at ts and returns its samples. Every failure is a 500: the
// query comes from the operator's rules, not from the client, so a query
// that does not parse is the server's fault too.
func (p *Provider) eval(ctx context.Context, q string, ts time.Time) (promql.Vector, error) {
	v, err := p.store.Instant(ctx, q, ts, storage.QueryOptions{})
	if err != nil {
		return nil, evalError(q, err)
	}
	switch v := v.(type) {
	case promql.Vector:
		return v, nil
	case promql.Scalar:
		// A scalar describes no object; external metrics can still use it.
		return promql.Vector{{T: v.T, F: v.V}}, nil
	default:
		return nil, apierrors.NewInternalError(fmt.Errorf("query %q returned %s, not a vector", q, v.Type()))
	}
}

// evalError gives a failed evaluation the Status a client can act on: a
// deadline is a 504 Timeout (retry later, ask for less), a cancellation or
// storage that is not open a 503, a query the rule rendered but the parser
// refused a 500 (the rule is wrong, not the request: selectors are checked
// before rendering). Never a 500 for a timeout.
func evalError(q string, err error) error {
	var (
		bad      *storage.BadQueryError
		backend  *storage.BackendError
		timeout  promql.ErrQueryTimeout
		canceled promql.ErrQueryCanceled
	)
	switch {
	case errors.As(err, &timeout):
		return apierrors.NewTimeoutError(fmt.Sprintf("evaluating %q: %v", q, err), 1)
	case errors.As(err, &canceled):
		return apierrors.NewServiceUnavailable(fmt.Sprintf("evaluating %q: %v", q, err))
	case errors.As(err, &backend):
		return apierrors.NewServiceUnavailable(fmt.Sprintf("evaluating %q: %v", q, err))
	case errors.Is(err, storage.ErrNotReady):
		return apierrors.NewServiceUnavailable(err.Error())
	case errors.As(err, &bad):
		return apierrors.NewInternalError(fmt.Errorf("rule rendered an invalid query %q: %w", q, err))
	}
	return apierrors.NewInternalError(fmt.Errorf("evaluate %q: %w", q, err))
}

// quantity keeps milli precision, the finest resource.Quantity carries in
// an int64 for the values metrics take.
func quantity(v float64) (resource.Quantity, bool) {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return resource.Quantity{}, false
	}
	return *resource.NewMilliQuantity(int64(math.Round(v*1000)), resource.DecimalSI), true
}

// valueArgs describe the objects of one custom-metrics answer.
type valueArgs struct {
	metric, namespace, kind, apiVersion, resLabel string
	sel                                           labels.Selector
	names                                         []string
	ts                                            time.Time
	window                                        *int64
}

// customValues keeps one item per asked-for object, because a rule's query
// may return series for objects the lister did not return (a regexp
// matcher on names is a superset when names contain regexp characters).
func customValues(a valueArgs, samples promql.Vector) *custom_metrics.MetricValueList {
	asked := make(map[string]bool, len(a.names))
	for _, n := range a.names {
		asked[n] = true
	}
	var selector *metav1.LabelSelector
	if a.sel != nil && !a.sel.Empty() {
		if ls, err := metav1.ParseToLabelSelector(a.sel.String()); err == nil {
			selector = ls
		}
	}
	out := &custom_metrics.MetricValueList{Items: []custom_metrics.MetricValue{}}
	for _, s := range samples {
		name := s.Metric.Get(a.resLabel)
		if !asked[name] {
			continue
		}
		q, ok := quantity(s.F)
		if !ok {
			continue
		}
		delete(asked, name) // one value per object, should a rule not group by it
		out.Items = append(out.Items, custom_metrics.MetricValue{
			DescribedObject: custom_metrics.ObjectReference{
				Kind: a.kind, APIVersion: a.apiVersion, Namespace: a.namespace, Name: name,
			},
			Metric:        custom_metrics.MetricIdentifier{Name: a.metric, Selector: selector},
			Timestamp:     metav1.NewTime(a.ts),
			WindowSeconds: a.window,
			Value:         q,
		})
	}
	return out
}

// externalValues turns every sample into one item, labelled as the sample
// is, minus its metric name.
func externalValues(metric string, ts time.Time, window *int64, samples promql.Vector) *external_metrics.ExternalMetricValueList {
	out := &external_metrics.ExternalMetricValueList{Items: []external_metrics.ExternalMetricValue{}}
	for _, s := range samples {
		q, ok := quantity(s.F)
		if !ok {
			continue
		}
		lbls := s.Metric.DropMetricName().Map()
		out.Items = append(out.Items, external_metrics.ExternalMetricValue{
			MetricName:    metric,
			MetricLabels:  lbls,
			Timestamp:     metav1.NewTime(ts),
			WindowSeconds: window,
			Value:         q,
		})
	}
	return out
}

// windowSeconds returns the longest range selector of a rendered query, the
// window a rate was computed over, so clients such as the HPA know how
// smoothed a value is; nil for instantaneous (gauge) queries.
func windowSeconds(p parser.Parser, q string) *int64 {
	expr, err := p.ParseExpr(q)
	if err != nil {
		return nil
	}
	var longest time.Duration
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if m, ok := n.(*parser.MatrixSelector); ok && m.Range > longest {
			longest = m.Range
		}
		return nil
	})
	if longest <= 0 {
		return nil
	}
	s := int64(longest / time.Second)
	return &s
}
