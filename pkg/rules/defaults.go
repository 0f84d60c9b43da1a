package rules

import (
	"time"

	pmodel "github.com/prometheus/common/model"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// DefaultWindow is the rate window of the default rules: 8 pod scrape
// intervals at the default 15s, the server passing 8 intervals for others.
// The rate is the gateway's adaptive_rate (pkg/storage), steady over the
// whole window and quick where the last interval or the recent half tells
// a change.
const DefaultWindow = 2 * time.Minute

// defaultSeriesQuery selects scraped pod series. container_* series are
// left out as in the adapter's defaults, where a separate cadvisor rule set
// names them; here they are the kubelet's and metrics.k8s.io serves them.
const defaultSeriesQuery = `{namespace!="",pod!="",__name__!~"^container_.*"}`

// DefaultConfig returns the rules used when no config file is given: the
// adapter's default rules for ordinary (non-container) series, with the
// resources pinned to the namespace and pod labels the gateway's scrape
// attaches, so every selected series is a pods metric and a namespaces
// metric (summed per namespace) without depending on discovery. Naming is
// the adapter's: gauges keep their name; x_total is served as x,
// x_seconds_total as x, both as per-second rates, adaptive_rate over
// window (DefaultWindow when window <= 0).
func DefaultConfig(window time.Duration) *Config {
	return DefaultConfigWithRate(window, storage.AdaptiveRate)
}

// DefaultConfigWithRate is DefaultConfig with counters read by the PromQL
// function rateFunc over window: "rate" for an engine that does not have
// the gateway's adaptive_rate (scale-out mode).
func DefaultConfigWithRate(window time.Duration, rateFunc string) *Config {
	if window <= 0 {
		window = DefaultWindow
	}
	res := func() ResourceMapping {
		return ResourceMapping{Overrides: map[string]GroupResource{
			"namespace": {Resource: "namespace"},
			"pod":       {Resource: "pod"},
		}}
	}
	rate := "sum(" + rateFunc + "(<<.Series>>{<<.LabelMatchers>>}[" + pmodel.Duration(window).String() + "])) by (<<.GroupBy>>)"
	return &Config{Rules: []DiscoveryRule{
		{
			SeriesQuery:   defaultSeriesQuery,
			SeriesFilters: []RegexFilter{{IsNot: ".*_total$"}},
			Resources:     res(),
			MetricsQuery:  "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
		},
		{
			SeriesQuery:   defaultSeriesQuery,
			SeriesFilters: []RegexFilter{{IsNot: ".*_seconds_total"}},
			Resources:     res(),
			Name:          NameMapping{Matches: "^(.*)_total$"},
			MetricsQuery:  rate,
		},
		{
			SeriesQuery:  defaultSeriesQuery,
			Resources:    res(),
			Name:         NameMapping{Matches: "^(.*)_seconds_total$"},
			MetricsQuery: rate,
		},
	}}
}
