package server

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/spf13/pflag"
)

// DefaultGOGC is the gateway's GC target percentage. Its live heap is
// mostly long-lived (the TSDB head, scrape caches, informer caches) and it
// allocates little between requests, so the GC runs every minute or two at
// any setting, and a low target costs little CPU for the headroom it
// saves. Measured (docs/benchmarks.md, "Memory settings"): at 1000x30
// steady RSS 671 MB at 50 and 558 MB at 25 for the same CPU per round; at
// 100x70 215 and 205 MB; 10 made listing all PodMetrics 50% slower.
// Prometheus 3 runs at 75.
const DefaultGOGC = 25

// MemoryOptions set the Go runtime's memory behaviour the way Prometheus 3
// does: a soft memory limit derived from the container's cgroup limit
// (--auto-gomemlimit), and a GC target percentage.
type MemoryOptions struct {
	// AutoGoMemLimit sets GOMEMLIMIT to Ratio of the cgroup's memory limit
	// (or of the machine's memory outside a container), unless the
	// GOMEMLIMIT environment variable is set.
	AutoGoMemLimit bool
	Ratio          float64
	// GOGC is the GC target percentage; the GOGC environment variable
	// takes its place unless the flag is given.
	GOGC int
	// ReleaseBinaryPages pages out the executable's resident pages once
	// the gateway has started (releaseBinaryPages).
	ReleaseBinaryPages bool
}

func defaultMemoryOptions() MemoryOptions {
	return MemoryOptions{AutoGoMemLimit: true, Ratio: 0.9, GOGC: DefaultGOGC, ReleaseBinaryPages: true}
}

func (m *MemoryOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&m.AutoGoMemLimit, "auto-gomemlimit", m.AutoGoMemLimit, "Set the Go runtime's soft memory limit (GOMEMLIMIT) to --auto-gomemlimit-ratio of the container's memory limit (cgroup), or of the machine's memory outside a container, as Prometheus 3 does. A GOMEMLIMIT environment variable takes precedence.")
	fs.Float64Var(&m.Ratio, "auto-gomemlimit-ratio", m.Ratio, "Fraction of the detected memory limit used as GOMEMLIMIT, in (0, 1].")
	fs.IntVar(&m.GOGC, "gogc", m.GOGC, "Go garbage collector target percentage (GOGC). Without this flag a GOGC environment variable takes precedence.")
	fs.BoolVar(&m.ReleaseBinaryPages, "release-binary-pages", m.ReleaseBinaryPages, "Once started, page out the resident pages of the gateway's own executable (most ran only at startup) and have the rest read back page by page as used (madvise MADV_PAGEOUT, MADV_RANDOM). Linux only.")
}

func (m MemoryOptions) validate() []error {
	var errs []error
	if m.Ratio <= 0 || m.Ratio > 1 {
		errs = append(errs, fmt.Errorf("auto-gomemlimit-ratio must be in (0, 1], got %v", m.Ratio))
	}
	if m.GOGC <= 0 {
		errs = append(errs, errors.New("gogc must be positive"))
	}
	return errs
}

// startupGOGC is the GC target while the gateway starts: replaying the WAL,
// decoding every Pod and Node of the first lists, and the first scrape of
// every kubelet leave a transient heap larger than the steady one, and the
// resident high-water mark would keep what the GC let it grow to. It lasts
// until Server.WaitStarted returns (a scrape interval or so).
const startupGOGC = 20

// Apply sets GOGC and, when enabled, GOMEMLIMIT for the process. It is
// process-global: the command calls it once. gogcFlagSet says whether
// --gogc was given, which beats a GOGC environment variable. Until the
// returned function is called (once the gateway has started), the GC runs
// at startupGOGC if that is lower.
func (m MemoryOptions) Apply(gogcFlagSet bool, logger *slog.Logger) (started func()) {
	gogc := m.GOGC
	if env := os.Getenv("GOGC"); env != "" && !gogcFlagSet {
		logger.Info("GOGC is set in the environment; --gogc default not applied", "GOGC", env)
		gogc = debug.SetGCPercent(-1)
		debug.SetGCPercent(gogc)
	} else {
		// As Prometheus does, so /status/runtimeinfo reports it.
		os.Setenv("GOGC", strconv.Itoa(gogc))
	}
	debug.SetGCPercent(min(gogc, startupGOGC))
	release := func() {
		if !m.ReleaseBinaryPages {
			return
		}
		before, after, err := releaseBinaryPages()
		if err != nil {
			logger.Warn("Could not page out the executable's startup pages", "err", err)
			return
		}
		logger.Info("Paged out the executable's startup pages", "residentBeforeMiB", before>>20, "residentAfterMiB", after>>20)
	}
	// Package initialisation and flag parsing ran: page them out now, so
	// they do not count in the startup peak, and again once started.
	release()
	started = func() {
		debug.SetGCPercent(gogc)
		release()
	}
	if !m.AutoGoMemLimit {
		return started
	}
	if _, err := memlimit.Set(
		memlimit.WithRatio(m.Ratio),
		memlimit.WithProvider(memlimit.ApplyFallback(memlimit.FromCgroup, memlimit.FromSystem)),
		memlimit.WithLogger(logger.With("component", "automemlimit")),
	); err != nil {
		logger.Warn("Could not set GOMEMLIMIT from the memory limit", "err", err)
	}
	return started
}

// What the memory budget reckons with, from docs/benchmarks.md: the process
// before any series (binary pages, runtime, stacks, informer caches of a
// cluster of some thousand pods), one head series with up to three hours of
// samples (its head chunk and chunk references, index postings, labels and
// the scrape cache's entry), and one sample a query holds in memory.
const (
	BudgetBase       = 256 << 20
	BudgetHeadSeries = 2 << 10
	BudgetSample     = 16
)

// MemoryBudget is the most memory the options let the gateway use with
// maxHeadSeries series in its head: the base, every series the cap admits,
// and every query both bounds admit at once at --query-max-samples (the
// metrics APIs' and the query API's). The shipped manifests keep it under
// GOMEMLIMIT, so that no default can run the pod out of its memory limit.
func (o *Options) MemoryBudget(maxHeadSeries uint64) int64 {
	queries := int64(o.QueryMaxConcurrency + o.QueryAPI.MaxConcurrent)
	return BudgetBase + int64(maxHeadSeries)*BudgetHeadSeries + queries*int64(o.QueryMaxSamples)*BudgetSample
}
