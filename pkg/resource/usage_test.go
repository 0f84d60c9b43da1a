package resource

import (
	"math"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestUsage(t *testing.T) {
	const res = 15 * time.Second
	t0 := int64(1_790_000_000_000)
	sec := func(s float64) int64 { return t0 + int64(s*1000) }
	for _, tc := range []struct {
		name      string
		container bool
		cpu       []point
		mem       []point
		start     float64 // seconds since t0; NaN: no start time series
		want      verdict
		nanocores int64
		bytes     int64
		window    time.Duration
	}{
		{"two samples", true, []point{{t0, 10}, {sec(15), 10.75}}, []point{{sec(15), 104857600}}, -86400, answered, 50_000_000, 104857600, res},
		{"last two of three", true, []point{{t0, 1}, {sec(15), 2}, {sec(30), 2.3}}, []point{{sec(30), 1}}, -86400, answered, 20_000_000, 1, res},
		{"one sample, old container", true, []point{{sec(15), 10}}, []point{{sec(15), 1}}, -86400, incomplete, 0, 0, 0},
		{"one sample, fresh container", true, []point{{sec(15), 0.12}}, []point{{sec(15), 1}}, 4, answered, 10_909_090, 1, 11 * time.Second},
		{"fresh container younger than 10s", true, []point{{sec(15), 0.12}}, []point{{sec(15), 1}}, 6, incomplete, 0, 0, 0},
		{"fresh rule wins over a previous sample", true, []point{{sec(6), 0.01}, {sec(15), 0.3}}, []point{{sec(15), 1}}, 5, answered, 30_000_000, 1, 10 * time.Second},
		{"counter fell, same container: skip it", true, []point{{t0, 50}, {sec(15), 0.3}}, []point{{sec(15), 1}}, math.NaN(), skipped, 0, 0, 0},
		{"counter fell after a restart", true, []point{{t0, 50}, {sec(40), 0.3}}, []point{{sec(40), 1}}, 20, incomplete, 0, 0, 0},
		{"zero previous point", true, []point{{t0, 0}, {sec(15), 2}}, []point{{sec(15), 1}}, -86400, incomplete, 0, 0, 0},
		{"restart: started after previous sample, too old for fresh rule", true, []point{{t0, 0.1}, {sec(40), 3}}, []point{{sec(40), 1}}, 2, incomplete, 0, 0, 0},
		{"zero cumulative cpu", true, []point{{t0, 0}, {sec(15), 0}}, []point{{sec(15), 1}}, -86400, incomplete, 0, 0, 0},
		{"zero memory", true, []point{{t0, 1}, {sec(15), 2}}, []point{{sec(15), 0}}, -86400, incomplete, 0, 0, 0},
		{"no memory", true, []point{{t0, 1}, {sec(15), 2}}, nil, -86400, incomplete, 0, 0, 0},
		{"no cpu", true, nil, []point{{sec(15), 1}}, -86400, incomplete, 0, 0, 0},
		{"duplicate timestamp", true, []point{{sec(15), 1}, {sec(15), 1}}, []point{{sec(15), 1}}, -86400, incomplete, 0, 0, 0},
		{"node", false, []point{{t0, 1000}, {sec(15), 1003}}, []point{{sec(15), 2181038080}}, math.NaN(), answered, 200_000_000, 2181038080, res},
		{"node counter fell", false, []point{{t0, 1000}, {sec(15), 3}}, []point{{sec(15), 1}}, math.NaN(), skipped, 0, 0, 0},
		{"node ignores start rule", false, []point{{sec(15), 3}}, []point{{sec(15), 1}}, math.NaN(), incomplete, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s series
			s.addCPU(fpoints(tc.cpu))
			s.addMem(fpoints(tc.mem))
			if !math.IsNaN(tc.start) {
				s.addStart(fpoints([]point{{sec(15), float64(t0)/1000 + tc.start}}))
			}
			u, ti, v := s.usage(res, tc.container)
			if v != tc.want {
				t.Fatalf("verdict = %v, want %v", v, tc.want)
			}
			if v != answered {
				return
			}
			if got := u.Cpu().ScaledValue(-9); got != tc.nanocores {
				t.Errorf("cpu = %dn, want %dn", got, tc.nanocores)
			}
			if got := u.Memory().Value(); got != tc.bytes {
				t.Errorf("memory = %d, want %d", got, tc.bytes)
			}
			if ti.window != tc.window {
				t.Errorf("window = %v, want %v", ti.window, tc.window)
			}
			if want := time.UnixMilli(tc.cpu[len(tc.cpu)-1].t); !ti.ts.Equal(want) {
				t.Errorf("timestamp = %v, want %v", ti.ts, want)
			}
		})
	}
}

func TestUsageNeverNegative(t *testing.T) {
	// Any pair of cumulative values, any order, any start time: either no
	// answer or a non-negative one.
	vals := []float64{0, 1e-9, 0.3, 50, 1e12, math.Inf(1), math.NaN()}
	for _, a := range vals {
		for _, b := range vals {
			for _, st := range []float64{-100, 0, 5, 12, 14.9} {
				var s series
				s.addCPU(fpoints([]point{{0, a}, {15000, b}}))
				s.addMem(fpoints([]point{{15000, 1}}))
				s.addStart(fpoints([]point{{15000, st}}))
				u, _, v := s.usage(15*time.Second, true)
				if v == answered && (u.Cpu().Sign() < 0 || u.Memory().Sign() < 0) {
					t.Errorf("a=%v b=%v start=%v: negative %v", a, b, st, u)
				}
			}
		}
	}
}

func fpoints(ps []point) []promql.FPoint {
	out := make([]promql.FPoint, len(ps))
	for i, p := range ps {
		out[i] = promql.FPoint{T: p.t, F: p.v}
	}
	return out
}

// TestQuantityOverflow: values past int64 keep their magnitude (one digit
// of precision dropped) instead of wrapping negative, as metrics-server's
// uint64 to Quantity conversion does; smaller ones are exact.
func TestQuantityOverflow(t *testing.T) {
	for _, tc := range []struct {
		v     uint64
		scale resource.Scale
		want  string
	}{
		{math.MaxUint64, 0, "18446744073709551610"},
		{math.MaxInt64 + 1, 0, "9223372036854775800"},
		{math.MaxInt64, 0, "9223372036854775807"},
		{250_000_000, resource.Nano, "250m"},
		{106954752, 0, "106954752"},
	} {
		q := quantity(tc.v, resource.DecimalSI, tc.scale)
		if got := q.String(); got != tc.want {
			t.Errorf("quantity(%d, scale %d) = %s, want %s", tc.v, tc.scale, got, tc.want)
		}
	}
}

func TestMatcher(t *testing.T) {
	for _, tc := range []struct {
		values map[string]bool
		want   string
	}{
		{nil, ""},
		{map[string]bool{"web-1": true}, `pod="web-1"`},
		{map[string]bool{"b": true, "a.x": true}, `pod=~"a\\.x|b"`},
	} {
		if got := matcher("pod", tc.values); got != tc.want {
			t.Errorf("matcher(%v) = %s, want %s", tc.values, got, tc.want)
		}
	}
	many := map[string]bool{}
	for i := 0; i <= maxNamesInMatcher; i++ {
		many[string(rune('a'+i%26))+string(rune(i))] = true
	}
	if got := matcher("pod", many); got != "" {
		t.Errorf("oversized set gave a matcher")
	}
}
