package storage_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	promstorage "github.com/prometheus/prometheus/storage"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

const scrapeInterval = 15 * time.Second

var t0 = time.Unix(1_790_000_000, 0)

// counters stores, for each pod, a counter scraped every 15s for dur whose
// increase over each interval is Poisson with mean rate(at) × 15s (exact
// when exact is set); from is when each pod's series starts. Scrapes in
// [gap[0], gap[1]) are missed, as during a restart.
func counters(t *testing.T, pods int, from, dur time.Duration, rate func(time.Duration) float64, exact bool, seed int64, gap ...time.Duration) *storage.Storage {
	t.Helper()
	s, err := storage.Open(storage.Options{Path: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	r := rand.New(rand.NewSource(seed))
	app := s.Appendable().AppenderV2(context.Background())
	for p := range pods {
		ls := labels.FromStrings("__name__", "http_requests_total", "pod", fmt.Sprint("p", p))
		c := 0.0
		for d := from; d <= dur; d += scrapeInterval {
			if d > from {
				mean := rate(d) * scrapeInterval.Seconds()
				if exact {
					c += mean
				} else {
					c += poisson(r, mean)
				}
			}
			if len(gap) == 2 && d >= gap[0] && d < gap[1] {
				continue
			}
			if _, err := app.Append(0, ls, 0, t0.Add(d).UnixMilli(), c, nil, nil, promstorage.AOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := app.Commit(); err != nil {
		t.Fatal(err)
	}
	return s
}

func poisson(r *rand.Rand, mean float64) float64 {
	n := 0.0
	for t := r.ExpFloat64(); t < mean; t += r.ExpFloat64() {
		n++
	}
	return n
}

// served is the two-pod average of the zero-config rate at d, as the HPA
// reads an AverageValue target.
func served(t *testing.T, s *storage.Storage, window, d time.Duration) (float64, bool) {
	t.Helper()
	v, err := s.Instant(context.Background(), fmt.Sprintf("avg(adaptive_rate(http_requests_total[%ds]))", int(window.Seconds())), t0.Add(d), storage.QueryOptions{})
	if err != nil {
		t.Fatal(err)
	}
	vec := v.(promql.Vector)
	if len(vec) == 0 {
		return 0, false
	}
	return vec[0].F, true
}

// TestAdaptiveRate measures the zero-config rate, adaptive_rate over 2m of
// samples scraped every 15s, against the goals of issue 16: a steady noisy
// rate does not flap, a step reaches the HPA within two scrape intervals,
// a restart's missed scrapes and a pod younger than the window are not
// under-read.
func TestAdaptiveRate(t *testing.T) {
	window := 2 * time.Minute
	t.Run("steady Poisson 5/s per pod", func(t *testing.T) {
		s := counters(t, 2, 0, 3*time.Hour, func(time.Duration) float64 { return 5 }, false, 1)
		off, n := 0, 0
		for d := 5 * time.Minute; d <= 3*time.Hour; d += 5 * time.Second {
			if v, ok := served(t, s, window, d); ok {
				n++
				if math.Abs(v/5-1) > 0.1 {
					off++
				}
			}
		}
		// rate(...[1m]), the zero-config rate before, strays in 4.1%.
		if frac := float64(off) / float64(n); frac > 0.01 {
			t.Errorf("the average strays beyond the 10%% tolerance in %.2f%% of %d evaluations, want at most 1%%", 100*frac, n)
		} else {
			t.Logf("beyond the tolerance in %.2f%% of %d evaluations", 100*frac, n)
		}
	})
	t.Run("step 5 to 10 per pod", func(t *testing.T) {
		step := 30 * time.Minute
		rate := func(d time.Duration) float64 {
			if d > step {
				return 10
			}
			return 5
		}
		// A load generator's steady rate: within 5% of 10 from two
		// intervals after the step on, and ever after.
		s := counters(t, 2, 0, step+10*time.Minute, rate, true, 0)
		for d := step + 2*scrapeInterval; d <= step+10*time.Minute; d += 5 * time.Second {
			if v, _ := served(t, s, window, d); math.Abs(v/10-1) > 0.05 {
				t.Errorf("%v after the step: %.2f, want 10 ± 5%%", d-step, v)
			}
		}
		// Poisson arrivals: an interval or two of 75 requests are too
		// noisy to tell a step by every time; from the fourth
		// on, within the noise, never back on the long window while it
		// still holds the step.
		for seed := range int64(10) {
			s := counters(t, 2, 0, step+10*time.Minute, rate, false, 100+seed)
			for d := step + 4*scrapeInterval; d <= step+10*time.Minute; d += 5 * time.Second {
				if v, _ := served(t, s, window, d); math.Abs(v/10-1) > 0.15 {
					t.Errorf("seed %d: %v after the step: %.2f, want 10 ± 15%%", seed, d-step, v)
				}
			}
		}
	})
	t.Run("scrapes missed by a restart", func(t *testing.T) {
		// Two scrapes missed at 20m: the gateway down for 30s.
		gap := []time.Duration{20 * time.Minute, 20*time.Minute + 2*scrapeInterval}
		s := counters(t, 2, 0, 30*time.Minute, func(time.Duration) float64 { return 10 }, true, 0, gap...)
		// While it is down nobody asks; from its first scrape back on,
		// every pod within 5% of its rate.
		for d := gap[1]; d <= 25*time.Minute; d += 5 * time.Second {
			if v, ok := served(t, s, window, d); !ok || math.Abs(v/10-1) > 0.05 {
				t.Errorf("%v after the gap began: %.2f (%v), want 10 ± 5%%", d-gap[0], v, ok)
			}
		}
	})
	t.Run("young pod, idle for its first interval", func(t *testing.T) {
		// The pod starts at 10m; its first interval has no traffic (not
		// Ready yet), then 10/s.
		start := 10 * time.Minute
		s := counters(t, 1, start, start+5*time.Minute, func(d time.Duration) float64 {
			if d <= start+scrapeInterval {
				return 0
			}
			return 10
		}, true, 0)
		for d := start + 2*scrapeInterval; d <= start+5*time.Minute; d += scrapeInterval {
			if v, ok := served(t, s, window, d); !ok || math.Abs(v/10-1) > 0.05 {
				t.Errorf("%v old: %.2f (%v), want 10 ± 5%%; rate over the whole 2m reads %.2f", d-start, v, ok, plainRate(t, s, d))
			}
		}
	})
}

func plainRate(t *testing.T, s *storage.Storage, d time.Duration) float64 {
	v, err := s.Instant(context.Background(), "avg(rate(http_requests_total[2m]))", t0.Add(d), storage.QueryOptions{})
	if err != nil || len(v.(promql.Vector)) == 0 {
		return math.NaN()
	}
	return v.(promql.Vector)[0].F
}
