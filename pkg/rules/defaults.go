package rules

import (
	"time"

	pmodel "github.com/prometheus/common/model"
)

// DefaultWindow is the rate window of the default rules. The adapter's
// published defaults use 5m against a Prometheus scraping every 30s-1m; the
// gateway scrapes pods at its metric resolution (15s by default), and 2m
// keeps at least four samples in every window up to a 30s interval, the
// margin Prometheus recommends for rate(), while following load changes
// faster than 5m would. The server may pass 4× its scrape interval instead.
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
// x_seconds_total as x, both as per-second rates over window (DefaultWindow
// when window <= 0).
func DefaultConfig(window time.Duration) *Config {
	if window <= 0 {
		window = DefaultWindow
	}
	w := pmodel.Duration(window).String()
	res := func() ResourceMapping {
		return ResourceMapping{Overrides: map[string]GroupResource{
			"namespace": {Resource: "namespace"},
			"pod":       {Resource: "pod"},
		}}
	}
	rate := "sum(rate(<<.Series>>{<<.LabelMatchers>>}[" + w + "])) by (<<.GroupBy>>)"
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
