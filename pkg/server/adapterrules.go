package server

import (
	"fmt"
	"os"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/metrics-server/pkg/api"

	"github.com/metrics-gateway/metrics-gateway/pkg/resource"
	"github.com/metrics-gateway/metrics-gateway/pkg/rules"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// The prometheus-adapter rules (pkg/rules) as the gateway wires them: the
// file, the zero-config defaults, and which getter answers metrics.k8s.io.

// loadAdapterConfig reads a prometheus-adapter rules file; an empty path
// means the zero-config default rules, built later from the pod interval.
// Every problem in the file is reported.
func loadAdapterConfig(path string) (*rules.Config, []error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, []error{fmt.Errorf("adapter-config: %w", err)}
	}
	cfg, err := rules.Load(b)
	if err != nil {
		return nil, []error{fmt.Errorf("adapter-config %s: %w", path, err)}
	}
	if errs := cfg.Validate(); len(errs) > 0 {
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = fmt.Errorf("adapter-config %s: %w", path, e)
		}
		return nil, out
	}
	return cfg, nil
}

// defaultRateWindow is the zero-config rate window: eight pod scrape
// intervals, over which adaptive_rate (pkg/storage) keeps a steady rate
// still, while its last-interval and recent-half reads follow a change
// within two intervals.
func defaultRateWindow(podInterval time.Duration) time.Duration {
	return 8 * podInterval
}

// compileRules compiles the adapter rules, or the zero-config defaults,
// against the API server's resources.
func (c *Config) compileRules(mapper meta.RESTMapper) (*rules.Rules, error) {
	cfg := c.Adapter
	switch {
	case cfg == nil && c.Backend != nil:
		// The engine has no adaptive_rate: a plain rate over four
		// intervals, which follows a change within a minute at 15s.
		cfg = rules.DefaultConfigWithRate(4*time.Duration(c.Gateway.Pods.ScrapeInterval), "rate")
	case cfg == nil:
		cfg = rules.DefaultConfig(defaultRateWindow(time.Duration(c.Gateway.Pods.ScrapeInterval)))
	}
	compiled, err := rules.Compile(cfg, mapper)
	if err != nil {
		return nil, fmt.Errorf("custom metrics rules: %w", err)
	}
	return compiled, nil
}

// resourceGetter answers metrics.k8s.io: from the adapter file's
// resourceRules when it has them, as prometheus-adapter would, otherwise
// with metrics-server's rules over the kubelet series.
func (c *Config) resourceGetter(store storage.Querier, tails resource.Tails, compiled *rules.Rules) api.MetricsGetter {
	if compiled.CPU != nil && compiled.Memory != nil {
		return resource.NewRulesGetter(store, compiled.CPU, compiled.Memory, compiled.Window, c.Storage.QueryTimeout, nil)
	}
	return resource.NewGetter(resource.GetterOptions{Querier: store, Tails: tails, Resolution: c.Kubelet.Resolution, Timeout: c.Storage.QueryTimeout})
}

// resourceGetterAt answers metrics.k8s.io as it did at a time, from
// storage alone (the tails hold only the latest samples), for explain.
func (c *Config) resourceGetterAt(store storage.Querier, compiled *rules.Rules) func(time.Time) api.PodMetricsGetter {
	return func(at time.Time) api.PodMetricsGetter {
		clock := fixedClock(at)
		if compiled.CPU != nil && compiled.Memory != nil {
			return resource.NewRulesGetter(store, compiled.CPU, compiled.Memory, compiled.Window, c.Storage.QueryTimeout, clock)
		}
		return resource.NewGetter(resource.GetterOptions{Querier: store, Resolution: c.Kubelet.Resolution, Timeout: c.Storage.QueryTimeout, Clock: clock})
	}
}

type fixedClock time.Time

func (f fixedClock) Now() time.Time { return time.Time(f) }

// withSelectorValidation answers a malformed labelSelector or
// metricLabelSelector on the custom and external metrics APIs with a 400
// Status. custom-metrics-apiserver parses them itself and returns its
// parse error as a 500, which would tell clients the server failed when
