package custom

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/klog/v2"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/metrics-gateway/metrics-gateway/pkg/custom/rules"
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

	mu      sync.Mutex
	last    *catalog
	builtAt time.Time
}

// get returns a catalog no older than ttl. On error it logs and returns the
// last good one, because ListAllMetrics cannot report errors. The lock is
// held across the rebuild on purpose: concurrent callers wait for one index
// read instead of each starting their own.
func (d *discoverer) get(ctx context.Context) *catalog {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if d.last != nil && now.Sub(d.builtAt) < d.ttl {
		return d.last
	}
	c, err := d.build(ctx, now)
	if err != nil {
		klog.ErrorS(err, "Discovering custom metrics; serving the previous list")
		if d.last == nil {
			return &catalog{customSrc: map[customKey]source{}, externalSrc: map[string]source{}}
		}
		return d.last
	}
	d.last, d.builtAt = c, now
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
	for _, r := range d.rules.Custom {
		series, err := selectSeries(ctx, q, hints, r)
		if err != nil {
			return nil, err
		}
		c.addCustom(r, series)
	}
	for _, r := range d.rules.External {
		series, err := selectSeries(ctx, q, hints, r)
		if err != nil {
			return nil, err
		}
		c.addExternal(r, series)
	}
	return c, nil
}

// selectSeries returns the rule's series that pass its filters, reading
// only the index (hints.Func "series").
func selectSeries(ctx context.Context, q promstorage.Querier, hints *promstorage.SelectHints, r *rules.Rule) ([]labels.Labels, error) {
	set := q.Select(ctx, false, hints, r.SeriesMatchers()...)
	var out []labels.Labels
	for set.Next() {
		out = append(out, set.At().Labels())
	}
	if err := set.Err(); err != nil {
		return nil, fmt.Errorf("select series %s: %w", r.SeriesQuery(), err)
	}
	return r.FilterSeries(out), nil
}

// addCustom records every (resource, metric) the series stand for. The
// first rule and series to claim a pair win, as rules are in config order.
func (c *catalog) addCustom(r *rules.Rule, series []labels.Labels) {
	for _, s := range series {
		seriesName, name, ok := metricName(r, s)
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
	for _, s := range series {
		seriesName, name, ok := metricName(r, s)
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

// metricName is the served name of series s under rule r; ok is false
// (and the series skipped) when the rule's naming does not apply.
func metricName(r *rules.Rule, s labels.Labels) (seriesName, name string, ok bool) {
	seriesName = s.Get(labels.MetricName)
	name, err := r.MetricNameForSeries(seriesName)
	if err != nil {
		klog.V(4).InfoS("Skipping series", "series", seriesName, "err", err)
		return seriesName, "", false
	}
	return seriesName, name, true
}
