package custom

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/metrics-gateway/metrics-gateway/pkg/rules"
)

// source is what a discovered API metric is computed from: the rule that
// renders its query and the stored series name the rule was matched on.
type source struct {
	rule   *rules.Rule
	series string
}

// customKey identifies a custom metric regardless of scope, because the
// API server asks by group-resource and name only.
type customKey struct {
	gr     schema.GroupResource
	metric string
}

// catalog is one discovery pass. It is immutable once built, so readers
// share it without locking.
type catalog struct {
	custom      []provider.CustomMetricInfo
	external    []provider.ExternalMetricInfo
	customSrc   map[customKey]source
	externalSrc map[string]source
}

// clusterScoped lists the resources the adapter never reports as
// namespaced, even when their series carry a namespace label.
var clusterScoped = map[schema.GroupResource]bool{
	{Resource: "namespaces"}:        true,
	{Resource: "nodes"}:             true,
	{Resource: "persistentvolumes"}: true,
}

// discoverer lists metrics from the TSDB index and caches the result for a
// short TTL, so the list follows new series within one scrape interval
// while bursts of discovery requests read the index once.
type discoverer struct {
	queryable promstorage.Queryable
	rules     *rules.Rules
	lookback  time.Duration
	ttl       time.Duration
	now       func() time.Time

	timeout time.Duration // of a background refresh
	// missTTL is the age after which a lookup that misses rebuilds (at
	// most ttl).
	missTTL time.Duration

	mu         sync.Mutex // serializes rebuilds
	last       atomic.Pointer[snapshot]
	refreshing atomic.Bool
}

// snapshot is a catalog and when it was built.
type snapshot struct {
	c       *catalog
	builtAt time.Time
}

// lookupCustom finds the source of a custom metric for a request. A request
// names a metric it saw listed, so the last catalog nearly always has it:
// then it is used even when older than ttl, and refreshed in the
// background, so requests (every HPA sync) do not pay for an index read.
// Only a metric the last catalog lacks waits for a rebuild, which is how a
// brand-new metric is found within one scrape.
func (d *discoverer) lookupCustom(ctx context.Context, k customKey) (source, bool) {
	return d.lookup(ctx, func(c *catalog) (source, bool) { src, ok := c.customSrc[k]; return src, ok })
}

// lookupExternal is lookupCustom for external metrics.
func (d *discoverer) lookupExternal(ctx context.Context, name string) (source, bool) {
	return d.lookup(ctx, func(c *catalog) (source, bool) { src, ok := c.externalSrc[name]; return src, ok })
}

func (d *discoverer) lookup(ctx context.Context, find func(*catalog) (source, bool)) (source, bool) {
	if c, stale := d.recent(); c != nil {
		if src, ok := find(c); ok {
			if stale {
				d.refreshInBackground()
			}
			return src, true
		}
	}
	return find(d.getFresh(ctx, d.missTTL))
}

// recent returns the last catalog, nil before the first build, and whether
// it is older than ttl. It never waits for a rebuild in progress.
func (d *discoverer) recent() (*catalog, bool) {
	snap := d.last.Load()
	if snap == nil {
		return nil, false
	}
	return snap.c, d.now().Sub(snap.builtAt) >= d.ttl
}

// refreshInBackground starts at most one rebuild at a time.
func (d *discoverer) refreshInBackground() {
	if !d.refreshing.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer d.refreshing.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
		defer cancel()
		d.get(ctx)
	}()
}

// get returns a catalog no older than ttl. On error it logs and returns the
// last good one, because ListAllMetrics cannot report errors. The lock is
// held across the rebuild on purpose: concurrent callers wait for one index
// read instead of each starting their own.
func (d *discoverer) get(ctx context.Context) *catalog { return d.getFresh(ctx, d.ttl) }

// getFresh is get with a catalog no older than ttl.
func (d *discoverer) getFresh(ctx context.Context, ttl time.Duration) *catalog {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	last := d.last.Load()
	if last != nil && now.Sub(last.builtAt) < ttl {
		return last.c
	}
	c, err := d.build(ctx, now)
	if err != nil {
		klog.ErrorS(err, "Discovering custom metrics; serving the previous list")
		if last == nil {
			return &catalog{customSrc: map[customKey]source{}, externalSrc: map[string]source{}}
		}
		return last.c
	}
	d.last.Store(&snapshot{c: c, builtAt: now})
	return c
}

func (d *discoverer) build(ctx context.Context, now time.Time) (*catalog, error) {
	q, err := d.queryable.Querier(now.Add(-d.lookback).UnixMilli(), now.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("open querier: %w", err)
	}
	defer q.Close()
	hints := &promstorage.SelectHints{Start: now.Add(-d.lookback).UnixMilli(), End: now.UnixMilli(), Func: "series"}
	c := &catalog{customSrc: map[customKey]source{}, externalSrc: map[string]source{}}
	// Rules often share a series query (the default rules all do): the
	// index is read once per distinct query.
	selected := map[string][]labels.Labels{}
	seriesOf := func(r *rules.Rule) ([]labels.Labels, error) {
		if s, ok := selected[r.SeriesQuery()]; ok {
			return s, nil
		}
		s, err := selectSeries(ctx, q, hints, r)
		selected[r.SeriesQuery()] = s
		return s, err
	}
	for _, r := range d.rules.Custom {
		series, err := seriesOf(r)
		if err != nil {
			return nil, err
		}
		c.addCustom(r, series)
	}
	for _, r := range d.rules.External {
		series, err := seriesOf(r)
		if err != nil {
			return nil, err
		}
		c.addExternal(r, series)
	}
	return c, nil
}

// selectSeries returns the series matching the rule's series query,
// reading only the index (hints.Func "series"). Name filters are applied
// by the caller, once per distinct name.
func selectSeries(ctx context.Context, q promstorage.Querier, hints *promstorage.SelectHints, r *rules.Rule) ([]labels.Labels, error) {
	set := q.Select(ctx, false, hints, r.SeriesMatchers()...)
	var out []labels.Labels
	for set.Next() {
		out = append(out, set.At().Labels())
	}
	if err := set.Err(); err != nil {
		return nil, fmt.Errorf("select series %s: %w", r.SeriesQuery(), err)
	}
	return out, nil
}

// namer memoizes a rule's verdict on series names: many series share a
// name (one per pod), and the filters and renaming are regexps.
type namer struct {
	rule  *rules.Rule
	names map[string]string // series name → API name; "" when skipped
}

func newNamer(r *rules.Rule) *namer { return &namer{rule: r, names: map[string]string{}} }

// name is the API name of series s under the rule; ok is false when the
// rule's filters or naming leave it out.
func (n *namer) name(s labels.Labels) (seriesName, name string, ok bool) {
	seriesName = s.Get(labels.MetricName)
	name, seen := n.names[seriesName]
	if !seen {
		if n.rule.MatchesName(seriesName) {
			name = metricName(n.rule, seriesName)
		}
		n.names[seriesName] = name
	}
	return seriesName, name, name != ""
}

// addCustom records every (resource, metric) the series stand for. The
// first rule and series to claim a pair win, as rules are in config order.
func (c *catalog) addCustom(r *rules.Rule, series []labels.Labels) {
	n := newNamer(r)
	for _, s := range series {
		seriesName, name, ok := n.name(s)
		if !ok {
			continue
		}
		resources, namespaced := r.ResourcesForSeries(s)
		for _, gr := range resources {
			k := customKey{gr: gr, metric: name}
			if _, ok := c.customSrc[k]; ok {
				continue
			}
			c.customSrc[k] = source{rule: r, series: seriesName}
			info := provider.CustomMetricInfo{GroupResource: gr, Namespaced: namespaced && !clusterScoped[gr], Metric: name}
			c.custom = append(c.custom, info)
		}
	}
}

func (c *catalog) addExternal(r *rules.Rule, series []labels.Labels) {
	n := newNamer(r)
	for _, s := range series {
		seriesName, name, ok := n.name(s)
		if !ok {
			continue
		}
		if _, ok := c.externalSrc[name]; ok {
			continue
		}
		c.externalSrc[name] = source{rule: r, series: seriesName}
		c.external = append(c.external, provider.ExternalMetricInfo{Metric: name})
	}
}

// metricName is the served name of a series name under rule r; empty
// (and the series skipped) when the rule's naming does not apply.
func metricName(r *rules.Rule, seriesName string) string {
	name, err := r.MetricNameForSeries(seriesName)
	if err != nil {
		klog.V(4).InfoS("Skipping series", "series", seriesName, "err", err)
		return ""
	}
	return name
}
