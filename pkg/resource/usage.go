package resource

import (
	"math"
	"time"

	"github.com/prometheus/prometheus/promql"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// freshContainerMinAge is metrics-server's minimum age of a new container
// before its start time may serve as the first cpu point: younger, and the
// rate is too noisy to use.
const freshContainerMinAge = 10 * time.Second

// point is one sample: milliseconds since the epoch, value.
type point struct {
	t int64
	v float64
}

// series holds what the resource API needs of one node or container: the
// last two cpu samples, the last memory sample, the start time (seconds).
type series struct {
	cpuPrev, cpuLast point
	cpuCount         int
	mem              point
	hasMem           bool
	start            float64
	hasStart         bool
}

func (s *series) addCPU(ps []promql.FPoint) {
	for _, p := range ps {
		if s.cpuCount == 0 || p.T > s.cpuLast.t {
			s.cpuPrev, s.cpuLast = s.cpuLast, point{p.T, p.F}
			s.cpuCount++
		}
	}
}

func (s *series) addMem(ps []promql.FPoint) {
	if n := len(ps); n > 0 && (!s.hasMem || ps[n-1].T > s.mem.t) {
		s.mem, s.hasMem = point{ps[n-1].T, ps[n-1].F}, true
	}
}

func (s *series) addStart(ps []promql.FPoint) {
	if n := len(ps); n > 0 {
		s.start, s.hasStart = ps[n-1].F, true
	}
}

// timeInfo is when a usage was measured and over which window.
type timeInfo struct {
	ts     time.Time
	window time.Duration
}

// verdict says what a series contributes to an answer.
type verdict int

const (
	// answered: usage is known.
	answered verdict = iota
	// incomplete: metrics-server would hold no usable pair of points; a
	// pod with such a container is left out.
	incomplete
	// skipped: metrics-server rejects the pair (the counter went down with
	// no restart) and leaves out this container only.
	skipped
)

// usage returns cpu and memory as metrics-server v0.9.0 computes them.
// resolution is the scrape interval; container says whether the rules for
// container start times apply.
func (s *series) usage(resolution time.Duration, container bool) (corev1.ResourceList, timeInfo, verdict) {
	if s.cpuCount == 0 || !s.hasMem {
		return nil, timeInfo{}, incomplete
	}
	// metrics-server drops a scrape's point whose cumulative cpu or
	// memory is zero, so such a point is never the last one...
	if nanos(s.cpuLast.v) == 0 || uint64(s.mem.v) == 0 {
		return nil, timeInfo{}, incomplete
	}
	last := s.cpuLast
	startMs := int64(math.Round(s.start * 1000))
	age := time.Duration(last.t-startMs) * time.Millisecond
	var prev point
	switch {
	case container && s.hasStart && age >= freshContainerMinAge && age < resolution:
		// A container that started within the last resolution, at least
		// 10s ago, is measured from its start time, with zero cpu then.
		prev = point{t: startMs, v: 0}
	case s.cpuCount >= 2:
		prev = s.cpuPrev
		// ...nor the previous one; and a start time at or after the
		// previous sample is a restart: the samples belong to different
		// containers and give no rate until the next one.
		if nanos(prev.v) == 0 || (container && s.hasStart && startMs >= prev.t) {
			return nil, timeInfo{}, incomplete
		}
		if nanos(last.v) < nanos(prev.v) {
			return nil, timeInfo{}, skipped
		}
	default:
		return nil, timeInfo{}, incomplete
	}
	window := time.Duration(last.t-prev.t) * time.Millisecond
	if window <= 0 {
		return nil, timeInfo{}, incomplete
	}
	cpu := float64(nanos(last.v)-nanos(prev.v)) / window.Seconds()
	return corev1.ResourceList{
		corev1.ResourceCPU:    quantity(uint64(cpu), resource.DecimalSI, -9),
		corev1.ResourceMemory: quantity(uint64(s.mem.v), resource.BinarySI, 0),
	}, timeInfo{ts: time.UnixMilli(last.t), window: window}, answered
}

// nanos converts cumulative core-seconds to core-nanoseconds the way
// metrics-server stores them, so rates match it to the nanocore.
func nanos(seconds float64) uint64 {
	if seconds <= 0 || math.IsNaN(seconds) {
		return 0
	}
	return uint64(seconds * 1e9)
}

// quantity mirrors metrics-server's uint64Quantity: values beyond int64 lose
// one decimal digit rather than overflow.
func quantity(v uint64, format resource.Format, scale resource.Scale) resource.Quantity {
	q := *resource.NewScaledQuantity(int64(v), scale)
	if v > math.MaxInt64 {
		q = *resource.NewScaledQuantity(int64(v/10), scale+1)
	}
	q.Format = format
	return q
}
