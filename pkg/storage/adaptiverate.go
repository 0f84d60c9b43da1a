package storage

import (
	"math"
	"time"

	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/util/annotations"
)

// AdaptiveRate is the name of the gateway's PromQL function for the
// zero-config rate of a counter: adaptive_rate(counter[window]) is the
// per-second rate as an HPA wants it, steady when the rate is, quick when
// it changes. Over the samples of the window (resets counted as
// rate() counts them), with no extrapolation past the first and last:
//
//   - the last interval's slope, where it differs from the whole window's
//     by more than both four standard deviations of a Poisson count over
//     that interval and 10%: a step, or a pod younger than the window whose
//     first samples, idle, would pull its rate down, reaches the HPA within
//     two scrape intervals;
//   - else the recent half's slope, where the halves of the samples' span
//     differ so (a step the whole window still averages in) and the last
//     interval sides with the recent half;
//   - else the whole window's slope: a steady, noisy rate stays within the
//     HPA's tolerance.
//
// A window holding a gap (scrapes missed during a restart) reads the slope
// across it, not less, since nothing is extrapolated.
const AdaptiveRate = "adaptive_rate"

// adaptiveRateFunction is its parser entry.
var adaptiveRateFunction = &parser.Function{Name: AdaptiveRate, ArgTypes: []parser.ValueType{parser.ValueTypeMatrix}, ReturnType: parser.ValueTypeVector}

func init() {
	// The engine looks functions up by name in this table; only a parser
	// built with ParserOptions accepts the name.
	promql.FunctionCalls[AdaptiveRate] = funcAdaptiveRate
}

// ParserOptions are the options of every PromQL parser of the gateway:
// Prometheus' functions and adaptive_rate.
func ParserOptions() parser.Options {
	fns := make(map[string]*parser.Function, len(parser.Functions)+1)
	for k, v := range parser.Functions {
		fns[k] = v
	}
	fns[AdaptiveRate] = adaptiveRateFunction
	return parser.Options{Functions: fns}
}

func funcAdaptiveRate(_ []promql.Vector, vals promql.Matrix, _ parser.Expressions, enh *promql.EvalNodeHelper) (promql.Vector, annotations.Annotations) {
	if v, ok := adaptiveRate(vals[0].Floats); ok {
		return append(enh.Out, promql.Sample{F: v}), nil
	}
	return enh.Out, nil
}

// adaptiveRate estimates the rate of a counter from its samples in the
// window. The halves are those of the samples' span, which is the
// window's but for a series younger than it.
func adaptiveRate(fs []promql.FPoint) (float64, bool) {
	n := len(fs)
	if n < 2 {
		return 0, false
	}
	split := fs[0].T + (fs[n-1].T-fs[0].T)/2
	whole := slope(fs)
	last := slope(fs[n-2:])
	if changed(last, whole, seconds(fs[n-1].T-fs[n-2].T)) {
		return last, true
	}
	// The recent half starts from the last sample at or before split, so
	// that it spans the half and the interval into it.
	i := 0
	for i+1 < n && fs[i+1].T <= split {
		i++
	}
	if i > 0 && i < n-1 {
		older, recent := slope(fs[:i+1]), slope(fs[i:])
		if changed(recent, older, seconds(fs[n-1].T-fs[i].T)) && math.Abs(recent-last) < math.Abs(older-last) {
			return recent, true
		}
	}
	return whole, true
}

// changed says a rate measured over span seconds differs from a reference
// by more than four standard deviations of a Poisson count and by more
// than 10%.
func changed(rate, ref, span float64) bool {
	d := math.Abs(rate - ref)
	return span > 0 && d > 4*math.Sqrt(ref/span) && d > 0.1*ref
}

// slope is the counter's increase per second from the first sample to the
// last, a decrease being a reset to zero as rate() takes it.
func slope(fs []promql.FPoint) float64 {
	var inc float64
	for i := 1; i < len(fs); i++ {
		if d := fs[i].F - fs[i-1].F; d >= 0 {
			inc += d
		} else {
			inc += fs[i].F
		}
	}
	span := seconds(fs[len(fs)-1].T - fs[0].T)
	if span <= 0 {
		return 0
	}
	return inc / span
}

func seconds(ms int64) float64 { return (time.Duration(ms) * time.Millisecond).Seconds() }
