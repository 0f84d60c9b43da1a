package scrape

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/common/model"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// The version of the gateway's configuration file this package reads.
const (
	ConfigAPIVersion = "metrics-gateway.io/v1alpha1"
	ConfigKind       = "GatewayConfig"
)

// GatewayConfig is the gateway's configuration file (--config). Read it
// with ParseConfig, then SetDefaults, then Validate: defaulting and
// validation are separate so that Validate sees exactly what will run.
type GatewayConfig struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Pods       PodsConfig `json:"pods,omitempty"`
	// Limits apply to the pod job and to every job in ScrapeConfigs that
	// does not set the Prometheus field itself.
	Limits  Limits        `json:"limits,omitempty"`
	Storage StorageConfig `json:"storage,omitempty"`
	// Cadvisor is the optional job for the kubelet's /metrics/cadvisor.
	Cadvisor CadvisorConfig `json:"cadvisor,omitempty"`
	// ScrapeConfigs are Prometheus scrape_configs, taken verbatim and
	// loaded by config.Load with the built-in jobs.
	ScrapeConfigs []map[string]any `json:"scrapeConfigs,omitempty"`
	// RemoteWrite is Prometheus' remote_write section, taken verbatim: every
	// sample the gateway stores is also sent there (docs/scale-out.md).
	RemoteWrite []map[string]any `json:"remoteWrite,omitempty"`
	// ExternalLabels are added to every series remote-written, as
	// Prometheus' global external_labels (e.g. cluster: eu-1). The gateway
	// adds ReplicaLabel itself.
	ExternalLabels map[string]string `json:"externalLabels,omitempty"`
	// QueryBackend, when set, is the engine that evaluates the custom and
	// external metrics APIs and the query API (see QueryBackend).
	QueryBackend map[string]any `json:"queryBackend,omitempty"`
}

// PodsConfig is the built-in job for pods annotated prometheus.io/scrape.
type PodsConfig struct {
	// Enabled defaults to true; a pointer tells "false" from "not given".
	Enabled        *bool           `json:"enabled,omitempty"`
	Namespaces     NamespaceFilter `json:"namespaces,omitempty"`
	ScrapeInterval model.Duration  `json:"scrapeInterval,omitempty"`
	ScrapeTimeout  model.Duration  `json:"scrapeTimeout,omitempty"`
	// Limits override the top-level limits for the pod job only.
	Limits Limits `json:"limits,omitempty"`
}

// NamespaceFilter selects namespaces: only Include when it is not empty,
// never Exclude.
type NamespaceFilter struct {
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
}

// CadvisorConfig is the job that scrapes every kubelet's /metrics/cadvisor
// (CadvisorJobYAML), for container dashboards: network, CFS throttling,
// filesystem. Off by default: it stores about 60 series per container, and
// some 115 more per pod, where the resource API needs three.
type CadvisorConfig struct {
	Enabled bool `json:"enabled,omitempty"`
	// ScrapeInterval and ScrapeTimeout, when 0, follow the kubelet job
	// (--metric-resolution, --kubelet-request-timeout). SetDefaults leaves
	// them 0 because those flags are not part of this file; a set interval
	// caps the flag's timeout.
	ScrapeInterval model.Duration `json:"scrapeInterval,omitempty"`
	ScrapeTimeout  model.Duration `json:"scrapeTimeout,omitempty"`
}

// StorageConfig bounds the embedded TSDB.
type StorageConfig struct {
	// MaxHeadSeries caps the series in the TSDB head; once reached, new
	// series are rejected and existing ones keep flowing. 0 is the default.
	MaxHeadSeries uint64 `json:"maxHeadSeries,omitempty"`
	// maxHeadSeriesDefaulted: SetDefaults chose MaxHeadSeries.
	maxHeadSeriesDefaulted bool
}

// MaxHeadSeriesDefaulted says whether MaxHeadSeries is SetDefaults' choice
// rather than the file's, which the gateway may lower to fit its memory.
func (s StorageConfig) MaxHeadSeriesDefaulted() bool { return s.maxHeadSeriesDefaulted }

// Defaults of the configuration file.
const (
	// As the kubelet's --metric-resolution default and the HPA's sync
	// period: custom metrics fresher than the HPA reads them buy nothing.
	DefaultPodScrapeInterval = 15 * time.Second
	// Prometheus' own default scrape timeout.
	DefaultPodScrapeTimeout = 10 * time.Second
	// A head series costs about 2 KiB with its chunks, index entries and
	// scrape cache entry, so 200,000 keep the head near 400 MB, inside the
	// shipped pod's memory (server.MemoryBudget; lowered under a smaller
	// memory limit when the file does not set it); a 1,000-node cluster's
	// kubelet series are about 100,000.
	DefaultMaxHeadSeries = 200_000
)

// ParseConfig reads a configuration document strictly: unknown fields are
// errors, since a misspelt limit would otherwise silently not apply.
func ParseConfig(data []byte) (*GatewayConfig, error) {
	var c GatewayConfig
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return nil, fmt.Errorf("parse gateway config: %w", err)
	}
	return &c, nil
}

// LoadConfigFile reads, defaults and validates the configuration file at
// path; an empty path is the default configuration. All problems are
// returned at once, with field paths.
func LoadConfigFile(path string) (*GatewayConfig, []error) {
	c := &GatewayConfig{APIVersion: ConfigAPIVersion, Kind: ConfigKind}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, []error{fmt.Errorf("read gateway config: %w", err)}
		}
		if c, err = ParseConfig(data); err != nil {
			return nil, []error{fmt.Errorf("%s: %w", path, err)}
		}
	}
	SetDefaults(c)
	if errs := c.Validate(); len(errs) > 0 {
		if path != "" {
			for i, e := range errs {
				errs[i] = fmt.Errorf("%s: %w", path, e)
			}
		}
		return nil, errs
	}
	return c, nil
}

// SetDefaults fills every field left unset.
func SetDefaults(c *GatewayConfig) {
	c.Limits = c.Limits.defaulted(DefaultLimits())
	if c.Pods.Enabled == nil {
		enabled := true
		c.Pods.Enabled = &enabled
	}
	if c.Pods.ScrapeInterval == 0 {
		c.Pods.ScrapeInterval = model.Duration(DefaultPodScrapeInterval)
	}
	if c.Pods.ScrapeTimeout == 0 {
		c.Pods.ScrapeTimeout = model.Duration(min(DefaultPodScrapeTimeout, time.Duration(c.Pods.ScrapeInterval)))
	}
	c.Pods.Limits = c.Pods.Limits.defaulted(c.Limits)
	if c.Storage.MaxHeadSeries == 0 {
		c.Storage.MaxHeadSeries = DefaultMaxHeadSeries
		c.Storage.maxHeadSeriesDefaulted = true
	}
}

// Validate reports every problem of a defaulted configuration, each with
// its field path. Prometheus' own checks of the scrape configs are one
// error at scrapeConfigs, as config.Load stops at the first.
func (c *GatewayConfig) Validate() []error {
	var errs field.ErrorList
	if c.APIVersion != ConfigAPIVersion {
		errs = append(errs, field.NotSupported(field.NewPath("apiVersion"), c.APIVersion, []string{ConfigAPIVersion}))
	}
	if c.Kind != ConfigKind {
		errs = append(errs, field.NotSupported(field.NewPath("kind"), c.Kind, []string{ConfigKind}))
	}
	errs = append(errs, c.Limits.validate(field.NewPath("limits"))...)
	errs = append(errs, c.Pods.validate(field.NewPath("pods"), c.Limits)...)
	errs = append(errs, c.Cadvisor.validate(field.NewPath("cadvisor"))...)
	errs = append(errs, c.validateScrapeConfigs(field.NewPath("scrapeConfigs"))...)
	errs = append(errs, c.validateScaleOut()...)
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return out
}

func (p PodsConfig) validate(path *field.Path, inherited Limits) field.ErrorList {
	var errs field.ErrorList
	interval, timeout := time.Duration(p.ScrapeInterval), time.Duration(p.ScrapeTimeout)
	if interval < time.Second {
		errs = append(errs, field.Invalid(path.Child("scrapeInterval"), p.ScrapeInterval.String(), "must be at least 1s"))
	}
	if timeout <= 0 {
		errs = append(errs, field.Invalid(path.Child("scrapeTimeout"), p.ScrapeTimeout.String(), "must be positive"))
	} else if timeout > interval {
		errs = append(errs, field.Invalid(path.Child("scrapeTimeout"), p.ScrapeTimeout.String(), "must not exceed scrapeInterval"))
	}
	ns := path.Child("namespaces")
	seen := sets.New[string]()
	for i, n := range p.Namespaces.Include {
		for _, msg := range validation.IsDNS1123Label(n) {
			errs = append(errs, field.Invalid(ns.Child("include").Index(i), n, msg))
		}
		seen.Insert(n)
	}
	for i, n := range p.Namespaces.Exclude {
		for _, msg := range validation.IsDNS1123Label(n) {
			errs = append(errs, field.Invalid(ns.Child("exclude").Index(i), n, msg))
		}
		if seen.Has(n) {
			errs = append(errs, field.Invalid(ns.Child("exclude").Index(i), n, "also in include"))
		}
	}
	errs = append(errs, p.Limits.overrides(inherited).validate(path.Child("limits"))...)
	return errs
}

// validate checks the fields whether or not the job is enabled, so that a
// mistake does not wait for the day it is turned on. A timeout above the
// flags' interval can only be seen by CadvisorJobYAML.
func (c CadvisorConfig) validate(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	interval, timeout := time.Duration(c.ScrapeInterval), time.Duration(c.ScrapeTimeout)
	if c.ScrapeInterval != 0 && interval < time.Second {
		errs = append(errs, field.Invalid(path.Child("scrapeInterval"), c.ScrapeInterval.String(), "must be at least 1s"))
	}
	switch {
	case timeout < 0:
		errs = append(errs, field.Invalid(path.Child("scrapeTimeout"), c.ScrapeTimeout.String(), "must be positive"))
	case c.ScrapeInterval != 0 && timeout > interval:
		errs = append(errs, field.Invalid(path.Child("scrapeTimeout"), c.ScrapeTimeout.String(), "must not exceed scrapeInterval"))
	}
	return errs
}

// validateScrapeConfigs checks what config.Load cannot name a field for
// (reserved job names), then loads the jobs through config.Load.
func (c *GatewayConfig) validateScrapeConfigs(path *field.Path) field.ErrorList {
	var errs field.ErrorList
	reserved := sets.New(KubeletJobName, PodJobName)
	// Only when enabled: a user's own kubernetes-cadvisor job, as in
	// Prometheus' kubernetes example, keeps working while ours is off.
	if c.Cadvisor.Enabled {
		reserved.Insert(CadvisorJobName)
	}
	for i, job := range c.ScrapeConfigs {
		name, _ := job["job_name"].(string)
		if reserved.Has(name) {
			errs = append(errs, field.Invalid(path.Index(i).Child("job_name"), name, "reserved for a built-in job"))
		}
	}
	if len(errs) > 0 || len(c.ScrapeConfigs) == 0 {
		return errs
	}
	doc, err := c.userJobsYAML()
	if err == nil {
		_, err = LoadConfig(slog.New(slog.DiscardHandler), doc)
	}
	if err != nil {
		errs = append(errs, field.Invalid(path, "", err.Error()))
	}
	return errs
}

// userJobsYAML renders the user's jobs with the default limits filled in.
// The jobs are copied: the configuration is not modified.
func (c *GatewayConfig) userJobsYAML() (string, error) {
	jobs := make([]any, len(c.ScrapeConfigs))
	for i, j := range c.ScrapeConfigs {
		job := make(map[string]any, len(j)+5)
		for k, v := range j {
			job[k] = v
		}
		c.Limits.applyTo(job)
		jobs[i] = job
	}
	b, err := yaml.Marshal(map[string]any{"scrape_configs": jobs})
	if err != nil {
		return "", fmt.Errorf("render scrape configs: %w", err)
	}
	return string(b), nil
}

// ScrapeDocs renders the pod job (when enabled) and the user's jobs as
// documents for LoadConfig, one each. c must be defaulted and valid.
func (c *GatewayConfig) ScrapeDocs(creds Credentials) ([]string, error) {
	var docs []string
	if c.Pods.Enabled == nil || *c.Pods.Enabled {
		doc, err := PodJobYAML(PodJobOptions{
			Interval: time.Duration(c.Pods.ScrapeInterval),
			Timeout:  time.Duration(c.Pods.ScrapeTimeout),
			Include:  c.Pods.Namespaces.Include,
			Exclude:  c.Pods.Namespaces.Exclude,
			Limits:   c.Pods.Limits,
		}, creds)
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
	if len(c.ScrapeConfigs) > 0 {
		doc, err := c.userJobsYAML()
		if err != nil {
			return nil, err
		}
		docs = append(docs, doc)
	}
	return docs, nil
}
