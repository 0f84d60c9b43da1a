package server

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime/debug"
	"strconv"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/alecthomas/units"
	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
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
	// ListGCHeadroom is the most GC headroom lent while metrics.k8s.io
	// lists are answered (listHeadroom), e.g. 64MiB; 0 lends none.
	ListGCHeadroom string
	// GCMinHeadroom is the least headroom the GC target leaves above the
	// live heap (listHeadroom.keepFloor), e.g. 16MiB; 0 for GOGC alone.
	GCMinHeadroom string
}

// DefaultGCMinHeadroom is --gc-min-headroom's default: it binds below a
// live heap of 64 MiB at --gogc=25, so at 10x30 (23 MB live: the GC at
// about 74%) and not at 100x70 (73 MB) or larger.
const DefaultGCMinHeadroom = "16MiB"

// DefaultListGCHeadroom is --list-gc-headroom's default.
const DefaultListGCHeadroom = "64MiB"

func defaultMemoryOptions() MemoryOptions {
	return MemoryOptions{AutoGoMemLimit: true, Ratio: 0.9, GOGC: DefaultGOGC, ReleaseBinaryPages: true, ListGCHeadroom: DefaultListGCHeadroom, GCMinHeadroom: DefaultGCMinHeadroom}
}

func (m *MemoryOptions) addFlags(fs *pflag.FlagSet) {
	fs.BoolVar(&m.AutoGoMemLimit, "auto-gomemlimit", m.AutoGoMemLimit, "Set the Go runtime's soft memory limit (GOMEMLIMIT) to --auto-gomemlimit-ratio of the container's memory limit (cgroup), or of the machine's memory outside a container, as Prometheus 3 does. A GOMEMLIMIT environment variable takes precedence.")
	fs.Float64Var(&m.Ratio, "auto-gomemlimit-ratio", m.Ratio, "Fraction of the detected memory limit used as GOMEMLIMIT, in (0, 1].")
	fs.IntVar(&m.GOGC, "gogc", m.GOGC, "Go garbage collector target percentage (GOGC). Without this flag a GOGC environment variable takes precedence.")
	fs.StringVar(&m.ListGCHeadroom, "list-gc-headroom", m.ListGCHeadroom, "Most garbage collector headroom lent, on top of --gogc's, while metrics.k8s.io lists without a label selector (kubectl top) are answered and for 2 s after the last: 8 KiB per pod (or node) in the cluster, at least 8 MiB, up to this size, e.g. 64MiB; 0 for none. While lent, the soft memory limit is held at what the Go runtime held at the first list of the burst plus the loan (raised only as the live heap grows), so a burst of lists raises the peak memory by about the loan. A list of every pod allocates about 2 kB per pod; with the headroom, lists sent one after another are collected every few lists instead of during each. GOMEMLIMIT still bounds the heap.")
	fs.StringVar(&m.GCMinHeadroom, "gc-min-headroom", m.GCMinHeadroom, "Least garbage collector headroom above the live heap, e.g. 16MiB: while --gogc's percentage of the live heap is less, the GC target is raised to this (the live heap is read every 5 s); 0 for --gogc alone. A small heap at a low --gogc collects after every few MB allocated.")
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
	if _, err := m.listGCHeadroom(); err != nil {
		errs = append(errs, err)
	}
	if _, err := m.gcMinHeadroom(); err != nil {
		errs = append(errs, err)
	}
	return errs
}

func (m MemoryOptions) gcMinHeadroom() (int64, error) {
	return optionalSize("gc-min-headroom", m.GCMinHeadroom, "16MiB, or 0")
}

func (m MemoryOptions) listGCHeadroom() (int64, error) {
	return optionalSize("list-gc-headroom", m.ListGCHeadroom, "64MiB, or 0")
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
		headroom, _ := m.listGCHeadroom() // validated
		gcHeadroom.enable(gogc, headroom)
		floor, _ := m.gcMinHeadroom() // validated
		gcHeadroom.keepFloor(gogc, floor)
		if floor > 0 {
			followFloorEvery(floorEvery)
		}
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
// the scrape cache's entry), one sample a query holds in memory, and one
// byte of --pod-scrape-max-bytes-in-flight: Prometheus reads a body into a
// pooled buffer whose size classes grow by 3x, sized to the target's last
// body, and doubles it as it fills.
const (
	BudgetBase          = 256 << 20
	BudgetHeadSeries    = 2 << 10
	BudgetSample        = 16
	BudgetPodScrapeByte = 3
)

// memorySizes are the settings the memory budget grows with.
type memorySizes struct {
	maxHeadSeries    uint64
	queryMaxSamples  int
	podBytesInFlight int64
}

// MemoryBudget is the most memory the options let the gateway use with
// maxHeadSeries series in its head: the base, every series the cap admits,
// every query both bounds admit at once at --query-max-samples (the
// metrics APIs' and the query API's), and the annotated pods' scrape bodies
// --pod-scrape-max-bytes-in-flight admits. The shipped manifests keep it
// under GOMEMLIMIT, so that no default can run the pod out of its memory
// limit; under a smaller limit the defaults are lowered (fitMemoryLimit).
func (o *Options) MemoryBudget(maxHeadSeries uint64) int64 {
	podBytes, _ := o.podBytesInFlight()
	return o.budget(memorySizes{maxHeadSeries: maxHeadSeries, queryMaxSamples: o.QueryMaxSamples, podBytesInFlight: podBytes})
}

func (o *Options) budget(s memorySizes) int64 {
	queries := int64(o.QueryMaxConcurrency + o.QueryAPI.MaxConcurrent)
	return BudgetBase + int64(s.maxHeadSeries)*BudgetHeadSeries + queries*int64(s.queryMaxSamples)*BudgetSample +
		s.podBytesInFlight*BudgetPodScrapeByte
}

// The least fitMemoryLimit lowers a default to: the kubelet series of a few
// dozen nodes, and kubectl top over some thousand containers.
const (
	minMaxHeadSeries   = 10_000
	minQueryMaxSamples = 100_000
)

// fitMemoryLimit returns the memory-sized settings the gateway runs with
// under limit (GOMEMLIMIT as the runtime has it once --auto-gomemlimit
// applied; math.MaxInt64 for none). When the budget of the defaults does
// not fit, those not given explicitly (storage.maxHeadSeries in the config
// file, --query-max-samples, --pod-scrape-max-bytes-in-flight) are lowered
// by one factor until it does, none below its floor; explicit values are
// kept. One log line says what was derived from what, or that the budget
// still exceeds the limit.
func (o *Options) fitMemoryLimit(limit int64, gw *scrape.GatewayConfig, logger *slog.Logger) (memorySizes, error) {
	podBytes, err := o.podBytesInFlight()
	if err != nil {
		return memorySizes{}, err
	}
	podFloor := podBytes
	if b, err := units.ParseBase2Bytes(gw.Pods.Limits.BodySizeLimit); err == nil && b > 0 {
		podFloor = min(podBytes, int64(b))
	}
	queries := int64(o.QueryMaxConcurrency + o.QueryAPI.MaxConcurrent)
	settings := []sizedSetting{
		{name: "storage.maxHeadSeries", value: int64(gw.Storage.MaxHeadSeries), explicit: !gw.Storage.MaxHeadSeriesDefaulted(), floor: minMaxHeadSeries, cost: BudgetHeadSeries},
		{name: "--query-max-samples", value: int64(o.QueryMaxSamples), explicit: o.flagGiven("query-max-samples"), floor: minQueryMaxSamples, cost: queries * BudgetSample},
		{name: "--pod-scrape-max-bytes-in-flight", value: podBytes, explicit: o.flagGiven(podBytesFlag), floor: podFloor, cost: BudgetPodScrapeByte},
	}
	defaults := make([]int64, len(settings))
	for i, s := range settings {
		defaults[i] = s.value
	}
	lowered := fitMemory(limit, BudgetBase, settings)
	sizes := memorySizes{maxHeadSeries: uint64(settings[0].value), queryMaxSamples: int(settings[1].value), podBytesInFlight: settings[2].value}

	budget := o.budget(sizes)
	attrs := []any{"budgetMiB", budget >> 20, "memoryLimit", "none"}
	if limit != math.MaxInt64 {
		attrs[3] = fmt.Sprintf("%dMiB", limit>>20)
	}
	var explicit []string
	for i, s := range settings {
		v := any(s.value)
		if s.value != defaults[i] {
			v = fmt.Sprintf("%d (default %d)", s.value, defaults[i])
		}
		attrs = append(attrs, s.name, v)
		if s.explicit {
			explicit = append(explicit, s.name)
		}
	}
	switch {
	case budget > limit:
		logger.Warn("The memory budget exceeds the memory limit: lower the explicit settings or raise the limit", append(attrs, "explicit", explicit)...)
	case lowered:
		logger.Info("Lowered the defaults that size memory to fit the memory limit", attrs...)
	default:
		logger.Info("Memory budget", attrs...)
	}
	return sizes, nil
}

// fitRuntimeMemoryLimit is fitMemoryLimit under the runtime's memory
// limit, logging to o.Logger or klog.
func (o *Options) fitRuntimeMemoryLimit(gw *scrape.GatewayConfig) (memorySizes, error) {
	logger := o.Logger
	if logger == nil {
		logger = slog.New(logr.ToSlogHandler(klog.Background()))
	}
	return o.fitMemoryLimit(debug.SetMemoryLimit(-1), gw, logger)
}

// sizedSetting is one setting the memory budget grows with.
type sizedSetting struct {
	name     string
	value    int64
	explicit bool
	// floor is the least it is lowered to; cost is its budget per unit.
	floor, cost int64
}

// fitMemory lowers the settings not given explicitly, all by one factor
// and none below its floor, until fixed plus every setting's cost fits in
// limit, and reports whether it lowered any.
func fitMemory(limit, fixed int64, settings []sizedSetting) bool {
	lowered := false
	free := make([]bool, len(settings))
	for i, s := range settings {
		free[i] = !s.explicit && s.value > s.floor
	}
	for {
		kept, scalable := fixed, int64(0)
		for i, s := range settings {
			if free[i] {
				scalable += s.value * s.cost
			} else {
				kept += s.value * s.cost
			}
		}
		if kept+scalable <= limit || scalable == 0 {
			return lowered
		}
		f := float64(limit-kept) / float64(scalable)
		floored := false
		for i := range settings {
			if !free[i] {
				continue
			}
			v := int64(float64(settings[i].value) * f)
			if v <= settings[i].floor {
				v, free[i], floored = settings[i].floor, false, true
			}
			settings[i].value, lowered = v, true
		}
		if !floored {
			return lowered
		}
	}
}
