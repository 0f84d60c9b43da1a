package rules

import (
	"fmt"

	pmodel "github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"
)

// Config is prometheus-adapter's configuration file. Field names and
// meanings are the adapter's (pkg/config in kubernetes-sigs/prometheus-adapter
// v0.12) so existing files load unchanged; it has no apiVersion or kind for
// the same reason.
type Config struct {
	// Rules map pod-scraped series to custom.metrics.k8s.io metrics.
	Rules []DiscoveryRule `json:"rules"`
	// ResourceRules, when present, answer metrics.k8s.io as in the adapter
	// (resource.RulesGetter); without them the gateway applies
	// metrics-server's rules to the kubelet series.
	ResourceRules *ResourceRules `json:"resourceRules,omitempty"`
	// ExternalRules map series to external.metrics.k8s.io metrics.
	ExternalRules []DiscoveryRule `json:"externalRules,omitempty"`

	// validated is set by a Validate that found nothing, so Compile does
	// not check the file a second time.
	validated bool
}

// DiscoveryRule selects series and says how they are named, which resources
// their labels describe, and how a request is turned into PromQL.
type DiscoveryRule struct {
	// SeriesQuery is a PromQL series selector choosing the series the rule
	// considers.
	SeriesQuery string `json:"seriesQuery"`
	// SeriesFilters further filter series by name, for what a selector
	// cannot say. Name.Matches is applied as one more filter.
	SeriesFilters []RegexFilter `json:"seriesFilters"`
	// Resources maps labels to Kubernetes group-resources.
	Resources ResourceMapping `json:"resources"`
	// Name turns a series name into the API metric name.
	Name NameMapping `json:"name"`
	// MetricsQuery is a Go template with delimiters << and >>, over the
	// fields of QueryArgs.
	MetricsQuery string `json:"metricsQuery,omitempty"`
}

// RegexFilter keeps series whose name matches Is, or does not match IsNot.
// Exactly one of the two is set.
type RegexFilter struct {
	Is    string `json:"is,omitempty"`
	IsNot string `json:"isNot,omitempty"`
}

// ResourceMapping maps Prometheus label names to Kubernetes group-resources.
type ResourceMapping struct {
	// Template renders a label name from .Group (dots and dashes replaced by
	// underscores) and .Resource (singular), with delimiters << and >>.
	Template string `json:"template,omitempty"`
	// Overrides map label names to group-resources, ahead of Template.
	Overrides map[string]GroupResource `json:"overrides,omitempty"`
	// Namespaced, for external rules, says whether the requested namespace
	// restricts the query; nil means true, as in the adapter.
	Namespaced *bool `json:"namespaced,omitempty"`
}

// GroupResource is a Kubernetes group-resource as written in the config;
// Resource may be singular or plural, it is normalized by a ResourceMapper.
type GroupResource struct {
	Group    string `json:"group,omitempty"`
	Resource string `json:"resource"`
}

// NameMapping turns series names into API metric names.
type NameMapping struct {
	// Matches is a regular expression on the series name; empty means ".*".
	Matches string `json:"matches"`
	// As expands Matches' captures into the API name; empty means "$0"
	// without capture groups, "$1" with one, and is an error with more.
	As string `json:"as"`
}

// ResourceRules say how the adapter would query cpu and memory for
// metrics.k8s.io.
type ResourceRules struct {
	CPU    ResourceRule `json:"cpu"`
	Memory ResourceRule `json:"memory"`
	// Window is the window reported with resource metrics; it should match
	// the range used in the queries.
	Window pmodel.Duration `json:"window"`
}

// ResourceRule holds the container and node queries of one resource.
type ResourceRule struct {
	ContainerQuery string          `json:"containerQuery"`
	NodeQuery      string          `json:"nodeQuery"`
	Resources      ResourceMapping `json:"resources"`
	// ContainerLabel is the label holding the container name; containers
	// are not a Kubernetes resource, so it cannot be in Resources.
	ContainerLabel string `json:"containerLabel"`
}

// Load parses an adapter config file. Unknown fields and duplicate keys are
// errors, as with the adapter's strict loader, so typos do not silently
// drop a rule. Load does not validate; call Validate.
func Load(data []byte) (*Config, error) {
	var cfg Config
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, fmt.Errorf("parse metrics discovery config: %w", err)
	}
	return &cfg, nil
}
