package scrape

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"

	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/relabel"
	yamlv2 "go.yaml.in/yaml/v2"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"
)

// ReplicaLabel is the external label every series a gateway remote-writes
// carries: its pod's name. Every replica scrapes every kubelet, so the
// engine receives the kubelet series once per replica; its querier
// deduplicates them on this label (Thanos: --query.replica-label).
const ReplicaLabel = "gateway_replica"

// Sharding divides the annotated-pod job and the users' jobs among Count
// gateway replicas: replica Index keeps the targets whose address hashes
// to it, as prometheus-operator shards (hashmod of __address__). The
// kubelet, cAdvisor and self jobs are never sharded: every replica serves
// metrics.k8s.io from its own scrapes.
type Sharding struct {
	Index, Count int
}

// shardLabel holds a target's shard during relabeling; __tmp labels are
// Prometheus' convention for scratch labels and are dropped with the
// other double-underscore labels.
const shardLabel = "__tmp_gateway_shard"

// Apply appends the shard's keep rule to every sharded job of cfg. One
// shard (or none) leaves cfg as it is.
func (s Sharding) Apply(cfg *config.Config) error {
	if s.Count <= 1 {
		return nil
	}
	if s.Index < 0 || s.Index >= s.Count {
		return fmt.Errorf("shard %d is not in [0, %d)", s.Index, s.Count)
	}
	for _, job := range cfg.ScrapeConfigs {
		if LocalJob(job.JobName) {
			continue
		}
		job.RelabelConfigs = append(job.RelabelConfigs,
			&relabel.Config{
				SourceLabels:         model.LabelNames{model.AddressLabel},
				Separator:            ";",
				Regex:                relabel.MustNewRegexp("(.*)"),
				Modulus:              uint64(s.Count),
				TargetLabel:          shardLabel,
				Replacement:          "$1",
				Action:               relabel.HashMod,
				NameValidationScheme: model.UTF8Validation,
			},
			&relabel.Config{
				SourceLabels:         model.LabelNames{shardLabel},
				Separator:            ";",
				Regex:                relabel.MustNewRegexp(strconv.Itoa(s.Index)),
				Replacement:          "$1",
				Action:               relabel.Keep,
				NameValidationScheme: model.UTF8Validation,
			})
	}
	return nil
}

var ordinalSuffix = regexp.MustCompile(`-([0-9]+)$`)

// ShardOfPod is the shard of a StatefulSet's pod: its ordinal, the number
// after the name's last dash.
func ShardOfPod(name string) (int, error) {
	m := ordinalSuffix.FindStringSubmatch(name)
	if m == nil {
		return 0, fmt.Errorf("pod name %q has no StatefulSet ordinal (a -N suffix): set --shard", name)
	}
	return strconv.Atoi(m[1])
}

// RemoteWriteConfig loads the remoteWrite section, as Prometheus'
// remote_write, with the externalLabels and the replica's ReplicaLabel as
// its global external labels. It is nil when remoteWrite is empty.
func (c *GatewayConfig) RemoteWriteConfig(replica string) (*config.Config, error) {
	if len(c.RemoteWrite) == 0 {
		return nil, nil
	}
	external := make(map[string]string, len(c.ExternalLabels)+1)
	for k, v := range c.ExternalLabels {
		external[k] = v
	}
	external[ReplicaLabel] = replica
	doc, err := yaml.Marshal(map[string]any{
		"global":       map[string]any{"external_labels": external},
		"remote_write": c.RemoteWrite,
	})
	if err != nil {
		return nil, fmt.Errorf("render remote_write: %w", err)
	}
	cfg, err := config.Load(string(doc), slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, fmt.Errorf("remote_write: %w", err)
	}
	return cfg, nil
}

// QueryBackend is the engine that answers custom.metrics.k8s.io,
// external.metrics.k8s.io and the query API in scale-out mode: its
// Prometheus HTTP API at URL, reached with Prometheus' HTTP client
// settings (authorization, basic_auth, oauth2, tls_config, http_headers,
// proxy_url ...).
type QueryBackend struct {
	URL              *promconfig.URL             `yaml:"url"`
	HTTPClientConfig promconfig.HTTPClientConfig `yaml:",inline"`
}

// Backend parses the queryBackend section; nil when it is absent.
func (c *GatewayConfig) Backend() (*QueryBackend, error) {
	if len(c.QueryBackend) == 0 {
		return nil, nil
	}
	doc, err := yaml.Marshal(c.QueryBackend)
	if err != nil {
		return nil, fmt.Errorf("render queryBackend: %w", err)
	}
	b := &QueryBackend{HTTPClientConfig: promconfig.DefaultHTTPClientConfig}
	if err := yamlv2.UnmarshalStrict(doc, b); err != nil {
		return nil, err
	}
	if b.URL == nil || b.URL.URL == nil || b.URL.Host == "" {
		return nil, errors.New("url is required (the engine's Prometheus HTTP API, e.g. http://thanos-query:10902)")
	}
	if b.URL.Scheme != "http" && b.URL.Scheme != "https" {
		return nil, fmt.Errorf("url %q: scheme must be http or https", b.URL.String())
	}
	if err := b.HTTPClientConfig.Validate(); err != nil {
		return nil, err
	}
	return b, nil
}

// validateScaleOut checks the remoteWrite, externalLabels and queryBackend
// sections.
func (c *GatewayConfig) validateScaleOut() field.ErrorList {
	var errs field.ErrorList
	for k := range c.ExternalLabels {
		if k == ReplicaLabel {
			errs = append(errs, field.Invalid(field.NewPath("externalLabels").Key(k), k, "set by the gateway: its pod's name"))
		}
	}
	if _, err := c.RemoteWriteConfig("x"); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("remoteWrite"), "", err.Error()))
	}
	if _, err := c.Backend(); err != nil {
		errs = append(errs, field.Invalid(field.NewPath("queryBackend"), "", err.Error()))
	}
	return errs
}

// LocalJob reports whether a replica keeps job's series in its own TSDB
// when its queries go to an engine: the jobs it answers from itself
// (metrics.k8s.io from the kubelet and cAdvisor jobs) and its own metrics.
// The sharded jobs' series are only written to the engine.
func LocalJob(job string) bool {
	switch job {
	case KubeletJobName, CadvisorJobName, SelfJobName:
		return true
	}
	return false
}
