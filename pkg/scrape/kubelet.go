package scrape

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// KubeletJobName is the job label of every series scraped from kubelets'
// /metrics/resource.
const KubeletJobName = "kubelet"

// CadvisorJobName is the job label of the optional kubelet /metrics/cadvisor
// job (CadvisorConfig). Its container_cpu_usage_seconds_total and
// container_memory_working_set_bytes share names with the kubelet job's:
// readers of either select on job.
const CadvisorJobName = "kubernetes-cadvisor"

// Metric names the resource API reads. Only these reach the head.
const (
	ContainerCPUMetric       = "container_cpu_usage_seconds_total"
	ContainerMemoryMetric    = "container_memory_working_set_bytes"
	ContainerStartTimeMetric = "container_start_time_seconds"
	NodeCPUMetric            = "node_cpu_usage_seconds_total"
	NodeMemoryMetric         = "node_memory_working_set_bytes"
)

// NodeLabel carries the node name on every kubelet series, including the
// node-level ones that the kubelet sends without labels.
const NodeLabel = "node"

// addressTypes are the node address types metrics-server accepts.
var addressTypes = map[string]bool{"Hostname": true, "InternalDNS": true, "InternalIP": true, "ExternalDNS": true, "ExternalIP": true}

// KubeletOptions say how to find and reach kubelets, in metrics-server's terms.
type KubeletOptions struct {
	Resolution time.Duration
	// ScrapeInterval, when set, replaces Resolution as the scrape interval
	// only. Tests use it to replay 15s kubelet rounds in a second.
	ScrapeInterval        time.Duration
	RequestTimeout        time.Duration
	PreferredAddressTypes []string
	Port                  int
	UseNodeStatusPort     bool
	NodeSelector          string
	InsecureTLS           bool
	// CAFile verifies kubelet serving certificates; empty means the
	// credentials' CA (the cluster CA).
	CAFile         string
	ClientCertFile string
	ClientKeyFile  string
	// ServiceAccount, "namespace/name", is the read-only ServiceAccount
	// whose tokens (from the TokenRequest API) are sent to kubelets instead
	// of the gateway's own credentials. Empty sends the gateway's own, as
	// metrics-server does.
	ServiceAccount string
}

// ServiceAccountRef splits ServiceAccount into namespace and name.
func (o KubeletOptions) ServiceAccountRef() (namespace, name string, err error) {
	ns, n, ok := strings.Cut(o.ServiceAccount, "/")
	if !ok || len(validation.IsDNS1123Label(ns)) > 0 || len(validation.IsDNS1123Subdomain(n)) > 0 {
		return "", "", fmt.Errorf("kubelet-service-account %q: want namespace/name", o.ServiceAccount)
	}
	return ns, n, nil
}

// DefaultKubeletOptions are metrics-server's defaults, with the 15s resolution.
func DefaultKubeletOptions() KubeletOptions {
	return KubeletOptions{
		Resolution:            15 * time.Second,
		RequestTimeout:        10 * time.Second,
		PreferredAddressTypes: []string{"InternalIP", "ExternalIP", "Hostname"},
		Port:                  10250,
	}
}

// Interval is how often kubelets (and the gateway itself, by the self job)
// are scraped: ScrapeInterval when set, else Resolution. metrics.k8s.io
// reads Resolution: the window its answers are computed over.
func (o KubeletOptions) Interval() time.Duration {
	if o.ScrapeInterval > 0 {
		return o.ScrapeInterval
	}
	return o.Resolution
}

// Validate reports every problem at once.
func (o KubeletOptions) Validate() []error {
	var errs []error
	if o.Resolution < time.Second {
		errs = append(errs, fmt.Errorf("metric-resolution must be at least 1s, got %v", o.Resolution))
	}
	if o.RequestTimeout <= 0 {
		errs = append(errs, errors.New("kubelet-request-timeout must be positive"))
	} else if o.RequestTimeout > o.Interval() {
		errs = append(errs, fmt.Errorf("kubelet-request-timeout (%v) must not exceed metric-resolution (%v)", o.RequestTimeout, o.Interval()))
	}
	if len(o.PreferredAddressTypes) == 0 {
		errs = append(errs, errors.New("kubelet-preferred-address-types is empty"))
	}
	for _, t := range o.PreferredAddressTypes {
		if !addressTypes[t] {
			errs = append(errs, fmt.Errorf("kubelet-preferred-address-types: unknown address type %q (want Hostname, InternalDNS, InternalIP, ExternalDNS or ExternalIP)", t))
		}
	}
	if o.Port <= 0 || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("kubelet-port %d out of range", o.Port))
	}
	if _, err := labels.Parse(o.NodeSelector); err != nil {
		errs = append(errs, fmt.Errorf("node-selector: %w", err))
	}
	if o.InsecureTLS && o.CAFile != "" {
		errs = append(errs, errors.New("cannot use both --kubelet-certificate-authority and --kubelet-insecure-tls"))
	}
	if (o.ClientCertFile == "") != (o.ClientKeyFile == "") {
		errs = append(errs, errors.New("need both --kubelet-client-key and --kubelet-client-certificate"))
	}
	if o.ServiceAccount != "" {
		if _, _, err := o.ServiceAccountRef(); err != nil {
			errs = append(errs, err)
		}
		if o.ClientCertFile != "" {
			errs = append(errs, errors.New("cannot use both --kubelet-service-account and --kubelet-client-certificate"))
		}
	}
	return errs
}

// Credentials authenticate the gateway to the API server (for discovery) and
// to kubelets. Outside a cluster they come from the kubeconfig; inside, from
// the service account (leave Kubeconfig and APIServer empty).
type Credentials struct {
	// Kubeconfig is the file discovery reads; empty means in-cluster.
	Kubeconfig string
	// Bearer token, inline or as a file (the service-account token is a file
	// so that rotation is picked up).
	BearerToken     string
	BearerTokenFile string
	// CA of the cluster, inline PEM or file.
	CAData []byte
	CAFile string
	// Client certificate, inline PEM or files.
	CertData, KeyData []byte
	CertFile, KeyFile string
}

// WithBearerOnly returns c with a bearer token (inline, or a file) as the
// only credential for scrapes: c's own token and client certificate are
// dropped. Discovery still reads c.Kubeconfig.
func (c Credentials) WithBearerOnly(token, tokenFile string) Credentials {
	c.BearerToken, c.BearerTokenFile = token, tokenFile
	c.CertData, c.KeyData, c.CertFile, c.KeyFile = nil, nil, "", ""
	return c
}

// KubeletJobYAML renders the kubelet scrape job as Prometheus configuration.
// The node's address and port are chosen by relabeling, as metrics-server
// chooses them; only the series the resource API reads are kept.
func KubeletJobYAML(o KubeletOptions, c Credentials) (string, error) {
	job := kubeletJob(KubeletJobName, "/metrics/resource", o.Interval(), o.RequestTimeout, o, c)
	// The kubelet stamps every sample with its own time; a vanished pod must
	// still get staleness markers.
	job["honor_timestamps"] = true
	job["track_timestamps_staleness"] = true
	job["scrape_protocols"] = []string{"PrometheusText0.0.4"}
	// A kubelet's resource metrics are tens of kilobytes per scrape: gzip
	// would cost CPU in the kubelet and the gateway to save bandwidth that
	// does not matter inside a cluster.
	job["enable_compression"] = false
	job["fallback_scrape_protocol"] = "PrometheusText0.0.4"
	job["metric_relabel_configs"] = []map[string]any{{
		"source_labels": []string{"__name__"},
		"regex":         strings.Join([]string{ContainerCPUMetric, ContainerMemoryMetric, ContainerStartTimeMetric, NodeCPUMetric, NodeMemoryMetric}, "|"),
		"action":        "keep",
	}}
	return renderJob(job)
}

// CadvisorJobYAML renders the optional job that scrapes the kubelet's
// /metrics/cadvisor, or "" when cfg is not enabled. It finds and reaches
// kubelets as the kubelet job does; its interval and timeout default to
// the kubelet job's.
func CadvisorJobYAML(o KubeletOptions, c Credentials, cfg CadvisorConfig) (string, error) {
	if !cfg.Enabled {
		return "", nil
	}
	interval, timeout := o.Interval(), o.RequestTimeout
	if cfg.ScrapeInterval != 0 {
		interval = time.Duration(cfg.ScrapeInterval)
		timeout = min(timeout, interval)
	}
	if cfg.ScrapeTimeout != 0 {
		timeout = time.Duration(cfg.ScrapeTimeout)
	}
	// Only here are both known: the interval may come from the flags.
	if timeout > interval {
		return "", fmt.Errorf("cadvisor.scrapeTimeout (%v) must not exceed the cadvisor scrape interval (%v)", timeout, interval)
	}
	job := kubeletJob(CadvisorJobName, "/metrics/cadvisor", interval, timeout, o, c)
	// Scrape time, as kube-prometheus does, not the kubelet's timestamps:
	// the kubelet stamps machine_* with the time it read the machine info,
	// once at its start (pkg/kubelet/kubelet.go, setCachedMachineInfo), and
	// the TSDB refuses samples that old, so they would never be stored.
	// Container samples lose at most one cAdvisor housekeeping interval of
	// precision, and get staleness markers without timestamp tracking.
	job["honor_timestamps"] = false
	job["metric_relabel_configs"] = cadvisorMetricRelabeling()
	return renderJob(job)
}

// cadvisorMetricRelabeling drops what kube-prometheus drops from
// /metrics/cadvisor: families that cost series and feed no dashboard, and
// the static families of cgroups that belong to no pod (system services).
func cadvisorMetricRelabeling() []map[string]any {
	return []map[string]any{
		{
			"source_labels": []string{"__name__"},
			"regex":         "container_(network_tcp_usage_total|network_udp_usage_total|tasks_state|cpu_load_average_10s|memory_failures_total|blkio_device_usage_total)",
			"action":        "drop",
		},
		{
			"source_labels": []string{"__name__", PodLabel, NamespaceLabel},
			"regex":         "(container_spec_.*|container_file_descriptors|container_sockets|container_threads_max|container_threads|container_start_time_seconds|container_last_seen);;",
			"action":        "drop",
		},
	}
}

// kubeletJob is what every job that scrapes kubelets shares: node
// discovery, the address relabeling (which also sets the node label), TLS
// and credentials.
func kubeletJob(name, path string, interval, timeout time.Duration, o KubeletOptions, c Credentials) map[string]any {
	sd := map[string]any{"role": "node"}
	if c.Kubeconfig != "" {
		sd["kubeconfig_file"] = c.Kubeconfig
	}
	if s := strings.TrimSpace(o.NodeSelector); s != "" {
		sd["selectors"] = []map[string]any{{"role": "node", "label": s}}
	}
	job := map[string]any{
		"job_name":              name,
		"scheme":                "https",
		"metrics_path":          path,
		"scrape_interval":       promDuration(interval),
		"scrape_timeout":        promDuration(timeout),
		"kubernetes_sd_configs": []any{sd},
		"relabel_configs":       addressRelabeling(o),
		// A kubelet answers /metrics/resource itself; a node that redirects
		// is sending the scrape, and its credentials, somewhere else.
		"follow_redirects": false,
	}
	tls := map[string]any{}
	switch {
	case o.InsecureTLS:
		tls["insecure_skip_verify"] = true
	case o.CAFile != "":
		tls["ca_file"] = o.CAFile
	case len(c.CAData) > 0:
		tls["ca"] = string(c.CAData)
	case c.CAFile != "":
		tls["ca_file"] = c.CAFile
	}
	usesClientCert := false
	switch {
	case o.ClientCertFile != "":
		tls["cert_file"], tls["key_file"] = o.ClientCertFile, o.ClientKeyFile
		usesClientCert = true
	case len(c.CertData) > 0:
		tls["cert"], tls["key"] = string(c.CertData), string(c.KeyData)
		usesClientCert = true
	case c.CertFile != "":
		tls["cert_file"], tls["key_file"] = c.CertFile, c.KeyFile
		usesClientCert = true
	}
	if len(tls) > 0 {
		job["tls_config"] = tls
	}
	// A token and a client certificate may both be given; kubelets accept
	// either, and Prometheus sends both.
	switch {
	case c.BearerToken != "":
		job["authorization"] = map[string]any{"type": "Bearer", "credentials": c.BearerToken}
	case c.BearerTokenFile != "":
		job["authorization"] = map[string]any{"type": "Bearer", "credentials_file": c.BearerTokenFile}
	case !usesClientCert && c.Kubeconfig == "":
		job["authorization"] = map[string]any{"type": "Bearer", "credentials_file": "/var/run/secrets/kubernetes.io/serviceaccount/token"}
	}
	return job
}

func renderJob(job map[string]any) (string, error) {
	b, err := yaml.Marshal(map[string]any{"scrape_configs": []any{job}})
	if err != nil {
		return "", fmt.Errorf("render %s job: %w", job["job_name"], err)
	}
	return string(b), nil
}

// addressRelabeling picks the first address of the preferred types, in
// order, and the kubelet port (fixed or from the node status), dropping
// nodes that have none of the preferred types.
func addressRelabeling(o KubeletOptions) []map[string]any {
	var rules []map[string]any
	if o.UseNodeStatusPort {
		rules = append(rules, map[string]any{"source_labels": []string{"__address__"}, "regex": `.*:([0-9]+)`, "target_label": "__tmp_port", "replacement": "$1"})
	} else {
		rules = append(rules, map[string]any{"target_label": "__tmp_port", "replacement": fmt.Sprint(o.Port)})
	}
	// Lowest priority first: a later rule overwrites an earlier one.
	for i := len(o.PreferredAddressTypes) - 1; i >= 0; i-- {
		rules = append(rules, map[string]any{
			"source_labels": []string{"__meta_kubernetes_node_address_" + o.PreferredAddressTypes[i]},
			"regex":         "(.+)", "target_label": "__tmp_host", "replacement": "$1",
		})
	}
	rules = append(rules,
		map[string]any{"source_labels": []string{"__tmp_host"}, "regex": "", "action": "drop"},
		// IPv6 literals need brackets.
		map[string]any{"source_labels": []string{"__tmp_host", "__tmp_port"}, "separator": ";", "regex": `(.*:.*);(.*)`, "target_label": "__address__", "replacement": "[$1]:$2"},
		map[string]any{"source_labels": []string{"__tmp_host", "__tmp_port"}, "separator": ";", "regex": `([^:]*);(.*)`, "target_label": "__address__", "replacement": "$1:$2"},
		map[string]any{"source_labels": []string{"__meta_kubernetes_node_name"}, "target_label": NodeLabel},
	)
	return rules
}
