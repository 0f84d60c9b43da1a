package bench

import (
	"math"
	"sort"
	"time"
)

// Percentile is the nearest-rank percentile p (0-100) of xs; xs is sorted in place.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	sort.Float64s(xs)
	rank := int(math.Ceil(p/100*float64(len(xs)))) - 1
	return xs[min(max(rank, 0), len(xs)-1)]
}

// Latency summarises request durations.
type Latency struct {
	N        int
	P50, P99 time.Duration
	Items    int // items in the last answer, to show what was asked
}

func summarise(ds []time.Duration, items int) Latency {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return Latency{N: len(ds), P50: time.Duration(Percentile(xs, 50)), P99: time.Duration(Percentile(xs, 99)), Items: items}
}
