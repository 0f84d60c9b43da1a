package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/metrics-gateway/metrics-gateway/pkg/autoscaling"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// Ranges a page may chart, the first the default.
var ranges = []string{"30m", "1h", "3h", "6h", "12h", "1d", "15m", "5m"}

// points is how many steps a chart has across its range.
const points = 240

// list is the HPAs with their state.
func (h *handler) list(w http.ResponseWriter, _ *http.Request) {
	hpas, err := h.o.Sources.HPAs.List(labels.Everything())
	if err != nil {
		h.fail(w, err)
		return
	}
	sort.Slice(hpas, func(i, j int) bool {
		return hpas[i].Namespace+"/"+hpas[i].Name < hpas[j].Namespace+"/"+hpas[j].Name
	})
	h.render(w, "list", struct {
		Title string
		HPAs  []*autoscalingv2.HorizontalPodAutoscaler
	}{"Autoscalers", hpas})
}

// hpa is one HPA: its charts and its explanation now.
func (h *handler) hpa(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("namespace"), r.PathValue("name")
	rng, err := parseRange(r.URL.Query().Get("range"))
	if err != nil {
		h.fail(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	hpa, err := h.o.Sources.HPAs.HorizontalPodAutoscalers(ns).Get(name)
	if err != nil {
		h.fail(w, err)
		return
	}
	e, explainErr := h.explain(r.Context(), ns, name, time.Now())
	end := time.Now()
	start := end.Add(-rng)
	sel := func(metric string, extra ...string) string {
		m := fmt.Sprintf(`%s{namespace=%q,horizontalpodautoscaler=%q`, metric, ns, name)
		for i := 0; i+1 < len(extra); i += 2 {
			m += fmt.Sprintf(`,%s=%q`, extra[i], extra[i+1])
		}
		return m + "}"
	}
	charts := []chart{h.chartOf(r.Context(), "chart-replicas", "Replicas", start, end, []query{
		{"current", sel(autoscaling.CurrentReplicas), false},
		{"desired (controller)", sel(autoscaling.DesiredReplicas), false},
		{"desired (replay)", sel(autoscaling.ReplayDesired), true},
		{"recommendation (replay)", sel(autoscaling.RecommendationReplicas), true},
		{"min", sel(autoscaling.MinReplicas), true},
		{"max", sel(autoscaling.MaxReplicas), true},
	})}
	for i, m := range hpa.Spec.Metrics {
		metric, kind := autoscaling.MetricName(m), autoscaling.TargetKind(m)
		charts = append(charts, h.chartOf(r.Context(), fmt.Sprintf("chart-metric-%d", i), fmt.Sprintf("%s against its target (%s)", metric, kind), start, end, []query{
			{"current", sel(autoscaling.CurrentMetric, "metric_name", metric, "metric_target_type", kind), false},
			{"target", sel(autoscaling.TargetMetric, "metric_name", metric, "metric_target_type", kind), true},
		}))
	}
	errText := ""
	if explainErr != nil {
		errText = explainErr.Error()
	}
	h.render(w, "hpa", struct {
		Title      string
		HPA        *autoscalingv2.HorizontalPodAutoscaler
		E          autoscaling.Explanation
		ExplainErr string
		Charts     []chart
		Range      string
		Ranges     []string
	}{ns + "/" + name, hpa, e, errText, charts, model.Duration(rng).String(), ranges})
}

// graph charts any expression.
func (h *handler) graph(w http.ResponseWriter, r *http.Request) {
	expr := r.URL.Query().Get("expr")
	rng, err := parseRange(r.URL.Query().Get("range"))
	if err != nil {
		h.fail(w, apierrors.NewBadRequest(err.Error()))
		return
	}
	var c chart
	errText := ""
	if expr != "" {
		end := time.Now()
		c, err = h.exprChart(r.Context(), expr, end.Add(-rng), end)
		if err != nil {
			errText = err.Error()
		}
	}
	h.render(w, "graph", struct {
		Title, Expr, Error, Range string
		Chart                     chart
		Ranges                    []string
	}{"Graph", expr, errText, model.Duration(rng).String(), c, ranges})
}

type query struct {
	label, expr string
	dashed      bool
}

// chartOf charts each query's first series.
func (h *handler) chartOf(ctx context.Context, id, title string, start, end time.Time, qs []query) chart {
	var lines []line
	for _, q := range qs {
		m, err := h.rangeQuery(ctx, h.o.Query, q.expr, start, end)
		if err != nil || len(m) == 0 {
			continue
		}
		lines = append(lines, line{Label: q.label, Points: m[0].Floats, Dashed: q.dashed})
	}
	return renderChart(id, title, lines, start, end)
}

// exprChart charts every series of expr, up to the palette's size.
func (h *handler) exprChart(ctx context.Context, expr string, start, end time.Time) (chart, error) {
	m, err := h.rangeQuery(ctx, h.o.Graph, expr, start, end)
	if err != nil {
		return chart{}, err
	}
	const most = 8
	var lines []line
	for i, s := range m {
		if i == most {
			break
		}
		lines = append(lines, line{Label: s.Metric.String(), Points: s.Floats})
	}
	c := renderChart("chart-expr", expr, lines, start, end)
	if len(m) > most {
		c.Title += fmt.Sprintf(" (the first %d of %d series)", most, len(m))
	}
	return c, nil
}

func (h *handler) rangeQuery(ctx context.Context, q storage.Querier, expr string, start, end time.Time) (promql.Matrix, error) {
	ctx, cancel := context.WithTimeout(ctx, h.o.Timeout)
	defer cancel()
	step := max(end.Sub(start)/points, time.Second)
	v, err := q.Range(ctx, expr, start, end, step, storage.QueryOptions{})
	if err != nil {
		return nil, err
	}
	m, ok := v.(promql.Matrix)
	if !ok {
		return nil, fmt.Errorf("%s is a %s, not a range of series", expr, v.Type())
	}
	return m, nil
}

// parseRange reads ?range= as a Prometheus duration, 30m when empty, at
// most a week.
func parseRange(s string) (time.Duration, error) {
	if s == "" {
		s = ranges[0]
	}
	d, err := model.ParseDuration(s)
	if err != nil || d <= 0 || time.Duration(d) > 7*24*time.Hour {
		return 0, fmt.Errorf("range=%q: want a duration up to 1w, such as 30m or 6h", s)
	}
	return time.Duration(d), nil
}

// fail answers an error page with the Status code of err.
func (h *handler) fail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	var s apierrors.APIStatus
	if errors.As(err, &s) {
		code = int(s.Status().Code)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_ = pages.ExecuteTemplate(w, "error", struct{ Title, Error string }{http.StatusText(code), err.Error()})
}

func (h *handler) render(w http.ResponseWriter, name string, data any) {
	var b strings.Builder
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}
