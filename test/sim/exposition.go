package sim

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"k8s.io/utils/clock"
)

// Annotations that shape what a pod's /metrics serves, so end-to-end tests
// can run well-behaved, new and hostile scrape targets side by side.
const (
	// AnnotationMetricsMode is one of the MetricsMode values; default ok.
	AnnotationMetricsMode = "sim.metrics-gateway.io/metrics-mode"
	// AnnotationExtraMetric adds one gauge, "NAME" (value 1) or "NAME=VALUE",
	// that no other pod exposes unless it carries the same annotation.
	AnnotationExtraMetric = "sim.metrics-gateway.io/extra-metric"
	// AnnotationRedirectTo makes /metrics answer every scrape with a 302
	// to this absolute http(s) URL: a pod trying to make its scraper fetch
	// something else.
	AnnotationRedirectTo = "sim.metrics-gateway.io/redirect-to"
	// AnnotationSeries sets how many id series the cardinality and churn
	// modes add (default CardinalitySeries): the soak's churning pods stay
	// inside the gateway's sample limit, so their series reach the head.
	AnnotationSeries = "sim.metrics-gateway.io/series"
)

// MetricsMode is how a pod's /metrics answers.
type MetricsMode string

// Modes a pod's /metrics can be put in by annotation.
const (
	MetricsOK MetricsMode = "ok"
	// MetricsGarbage is a 200 with a body no Prometheus parser accepts.
	MetricsGarbage MetricsMode = "garbage"
	// MetricsHuge is the pod's metrics followed by comment lines up to
	// HugeBodyBytes: valid text, only its size is wrong. It is streamed, so
	// the simulator never holds it.
	MetricsHuge MetricsMode = "huge"
	// MetricsCardinality adds CardinalitySeries series of one family, one
	// per value of an id label: a label holding a user or request id.
	MetricsCardinality MetricsMode = "cardinality"
	// MetricsChurn is MetricsCardinality with new id values on every
	// scrape, as when the ids are request ids: each scrape is all new series.
	MetricsChurn MetricsMode = "churn"
)

// Sizes of the hostile modes, as issue 4's acceptance names them.
const (
	HugeBodyBytes     = 100 << 20
	CardinalitySeries = 100_000
	// CardinalityMetric is the family MetricsCardinality adds.
	CardinalityMetric = "sim_request_latency_seconds"
)

// Exposition is what a pod's /metrics serves beyond its two own series.
type Exposition struct {
	Mode        MetricsMode
	ExtraMetric string // empty for none
	ExtraValue  float64
	RedirectTo  string // empty for none
	// Series is how many id series the cardinality and churn modes add.
	Series int
}

// ExpositionFromAnnotations reads the exposition annotations and reports
// every malformed one; the pod then serves the default for that part.
func ExpositionFromAnnotations(a map[string]string) (Exposition, []error) {
	x := Exposition{Mode: MetricsOK, Series: CardinalitySeries}
	var errs []error
	if v, ok := a[AnnotationMetricsMode]; ok {
		switch m := MetricsMode(v); m {
		case MetricsOK, MetricsGarbage, MetricsHuge, MetricsCardinality, MetricsChurn:
			x.Mode = m
		default:
			errs = append(errs, fmt.Errorf("annotation %s=%q: want ok, garbage, huge, cardinality or churn", AnnotationMetricsMode, v))
		}
	}
	if v, ok := a[AnnotationRedirectTo]; ok {
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("annotation %s=%q: want an absolute http or https URL", AnnotationRedirectTo, v))
		} else {
			x.RedirectTo = v
		}
	}
	if v, ok := a[AnnotationSeries]; ok {
		if n, err := strconv.Atoi(v); err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("annotation %s=%q: want a count of series, 0 or more", AnnotationSeries, v))
		} else {
			x.Series = n
		}
	}
	if v, ok := a[AnnotationExtraMetric]; ok {
		name, val, hasVal := strings.Cut(v, "=")
		f := 1.0
		var err error
		if hasVal {
			f, err = strconv.ParseFloat(val, 64)
		}
		switch {
		case !model.LegacyValidation.IsValidMetricName(name):
			errs = append(errs, fmt.Errorf("annotation %s=%q: %q is not a metric name", AnnotationExtraMetric, v, name))
		case err != nil:
			errs = append(errs, fmt.Errorf("annotation %s=%q: value: %w", AnnotationExtraMetric, v, err))
		default:
			x.ExtraMetric, x.ExtraValue = name, f
		}
	}
	return x, errs
}

// podHandler serves the load target and the pod's own /metrics. Any path other
// than /metrics counts as one request, whatever the method, as podinfo does.
func podHandler(m *PodModel, x Exposition, clk clock.PassiveClock) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	err := errors.Join(
		reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "Requests this pod has served (excluding /metrics).",
		}, func() float64 { return float64(m.Requests()) })),
		reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "queue_depth", Help: "Simulated work queue length, set through the control API.",
		}, m.QueueDepth)),
	)
	if err == nil && x.ExtraMetric != "" {
		err = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: x.ExtraMetric, Help: "A metric only pods annotated " + AnnotationExtraMetric + " expose.",
		}, func() float64 { return x.ExtraValue }))
	}
	if err != nil {
		return nil, fmt.Errorf("register pod metrics: %w", err)
	}
	var scrapes atomic.Int64 // numbers the id values in MetricsChurn
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, r *http.Request) {
		if x.RedirectTo != "" {
			http.Redirect(w, r, x.RedirectTo, http.StatusFound)
			return
		}
		// Text 0.0.4 whatever the Accept header says, so every scraper sees the same
		// bytes a plain exporter would send.
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		w.Header().Set("Content-Type", string(format))
		if x.Mode == MetricsGarbage {
			_, _ = io.WriteString(w, garbageBody)
			return
		}
		fams, err := reg.Gather()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		cw := &countingWriter{w: bufio.NewWriterSize(w, 64<<10)}
		enc := expfmt.NewEncoder(cw, format)
		for _, f := range fams {
			if err := enc.Encode(f); err != nil {
				return // the client went away; nothing to tell it
			}
		}
		switch x.Mode {
		case MetricsHuge:
			err = writePadding(cw, HugeBodyBytes-cw.n)
		case MetricsCardinality:
			err = writeCardinality(cw, x.Series, 0)
		case MetricsChurn:
			err = writeCardinality(cw, x.Series, scrapes.Add(1)*int64(x.Series))
		}
		if err == nil {
			_ = cw.w.Flush()
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		m.ServeRequest(clk.Now())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux, nil
}

// countingWriter counts what went through it, so padding can stop at an
// exact total.
type countingWriter struct {
	w *bufio.Writer
	n int64
}

func (c *countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// writePadding writes n bytes of comment lines, one shared block at a time,
// and stops at the first write error: a scraper over its body size limit
// hangs up, and the rest is never produced.
func writePadding(w io.Writer, n int64) error {
	line := "# padding " + strings.Repeat("x", 117) + "\n" // 128 bytes
	block := []byte(strings.Repeat(line, 512))             // 64 KiB
	for n > 0 {
		b := block
		if int64(len(b)) > n {
			b = b[:n]
			b[len(b)-1] = '\n' // a cut line still ends the body cleanly
		}
		k, err := w.Write(b)
		n -= int64(k)
		if err != nil {
			return err
		}
	}
	return nil
}

// writeCardinality writes one gauge family with n series, each with its own
// id label value, numbered from first.
func writeCardinality(w io.Writer, n int, first int64) error {
	if _, err := fmt.Fprintf(w, "# HELP %s One series per request id: a cardinality explosion.\n# TYPE %s gauge\n", CardinalityMetric, CardinalityMetric); err != nil {
		return err
	}
	line := make([]byte, 0, 64)
	for i := range n {
		line = append(line[:0], CardinalityMetric...)
		line = append(line, `{id="req-`...)
		line = strconv.AppendInt(line, first+int64(i), 10)
		line = append(line, `"} 0.25`+"\n"...)
		if _, err := w.Write(line); err != nil {
			return err
		}
	}
	return nil
}
