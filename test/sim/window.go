package sim

import "time"

// RateWindow is the span a pod's request rate is averaged over.
const RateWindow = 10 * time.Second

// rateWindow holds the arrival times of the requests of the last RateWindow. The
// rate is the count over the window length, so it steps up at each arrival and
// down exactly RateWindow later: piecewise constant with known change points, which
// lets PodModel integrate CPU exactly, and each request adds the same CPU however
// the requests are spaced. Memory is 8 bytes per request in the window (80 KiB per
// pod at 1000 req/s). Not goroutine-safe.
type rateWindow struct {
	times []int64 // Unix nanoseconds, non-decreasing; live from head on
	head  int
}

// expire drops the requests that have left the window at now.
func (w *rateWindow) expire(now int64) {
	for w.head < len(w.times) && w.times[w.head]+int64(RateWindow) <= now {
		w.head++
	}
	// Reclaim the dead prefix once it dominates, keeping appends amortised O(1).
	if w.head > 1024 && w.head*2 > len(w.times) {
		w.times = append(w.times[:0], w.times[w.head:]...)
		w.head = 0
	}
}

// nextExpiry is when the oldest request in the window leaves it.
func (w *rateWindow) nextExpiry() (int64, bool) {
	if w.head == len(w.times) {
		return 0, false
	}
	return w.times[w.head] + int64(RateWindow), true
}

// add records a request at t. Arrival times must not go back; a clock step back
// is clamped to the newest time held.
func (w *rateWindow) add(t int64) {
	if n := len(w.times); n > w.head && t < w.times[n-1] {
		t = w.times[n-1]
	}
	w.times = append(w.times, t)
}

// rate is requests per second over the window.
func (w *rateWindow) rate() float64 {
	return float64(len(w.times)-w.head) / RateWindow.Seconds()
}
