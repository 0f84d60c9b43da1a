package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"github.com/spf13/pflag"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	genericoptions "k8s.io/apiserver/pkg/server/options"
	utilcompatibility "k8s.io/apiserver/pkg/util/compatibility"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	cliflag "k8s.io/component-base/cli/flag"
	"k8s.io/component-base/logs"
	logsapi "k8s.io/component-base/logs/api/v1"
	openapicommon "k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"
	cmapiserver "sigs.k8s.io/custom-metrics-apiserver/pkg/apiserver"
	cmopenapicore "sigs.k8s.io/custom-metrics-apiserver/pkg/generated/openapi/core"
	cmopenapicustom "sigs.k8s.io/custom-metrics-apiserver/pkg/generated/openapi/custommetrics"
	cmopenapiexternal "sigs.k8s.io/custom-metrics-apiserver/pkg/generated/openapi/externalmetrics"
	"sigs.k8s.io/metrics-server/pkg/api"
	generatedopenapi "sigs.k8s.io/metrics-server/pkg/api/generated/openapi"

	"github.com/metrics-gateway/metrics-gateway/pkg/autoscaling"
	"github.com/metrics-gateway/metrics-gateway/pkg/query"
	"github.com/metrics-gateway/metrics-gateway/pkg/rules"
	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// Options are the gateway's command-line options. Names follow
// metrics-server wherever the meaning is the same.
type Options struct {
	GenericServerRunOptions *genericoptions.ServerRunOptions
	SecureServing           *genericoptions.SecureServingOptionsWithLoopback
	Authentication          *genericoptions.DelegatingAuthenticationOptions
	Authorization           *genericoptions.DelegatingAuthorizationOptions
	Audit                   *genericoptions.AuditOptions
	Features                *genericoptions.FeatureOptions
	Logging                 *logs.Options

	Kubelet          scrape.KubeletOptions
	ConfigFile       string
	AdapterConfig    string
	Kubeconfig       string
	StoragePath      string
	StorageRetention time.Duration
	// StorageRetentionSize bounds the TSDB on disk ("" or "0" for no bound).
	StorageRetentionSize string
	// StorageMinFreeSpace is the free space the storage's filesystem must
	// keep ("0" for no reserve).
	StorageMinFreeSpace string
	// StorageWALCompression compresses the write-ahead log's records.
	StorageWALCompression string
	QueryTimeout          time.Duration
	QueryMaxSamples       int
	// QueryMaxConcurrency bounds the evaluations of the metrics APIs at once.
	QueryMaxConcurrency int
	QueryAPI            QueryAPIOptions
	// PodScrapeMaxBytesInFlight bounds the bytes read from annotated pods
	// whose scrape is not stored yet, all pods together ("0" for no bound).
	PodScrapeMaxBytesInFlight string
	ServingCert               ServingCertOptions
	Memory                    MemoryOptions
	// RecordAutoscalers records every HorizontalPodAutoscaler each round.
	RecordAutoscalers bool
	// Replay is kube-controller-manager's HPA settings, which the replay
	// behind the history and explain assumes.
	Replay autoscaling.Options
	// Shards and Shard divide the pod and user jobs among replicas
	// (scale-out); Shard -1 takes the StatefulSet pod's ordinal.
	Shards      int
	Shard       int
	ShowVersion bool
	// flags are those Flags returned, to tell a value given from a default.
	flags cliflag.NamedFlagSets
	// files are the --config and --adapter-config files as Validate read
	// and checked them, for Config: each file is read and validated once.
	files *loadedFiles

	// DisableAuthForTesting serves without delegated authn/authz; tests only.
	DisableAuthForTesting bool
	// Logger, when set, is where the gateway's own components log (not a
	// flag); nil logs through klog, as the apiserver libraries do.
	Logger *slog.Logger
}

// QueryAPIOptions configure the Prometheus-compatible API (/prometheus/api/v1).
type QueryAPIOptions struct {
	// MaxConcurrent bounds evaluating requests at once.
	MaxConcurrent int
	// Limits bound each request's expressions and answers.
	Limits query.Limits
	// InsecureBindAddress, when set, also serves the API over plain HTTP
	// without authentication; it must be a loopback address.
	InsecureBindAddress string
}

// NewOptions returns options with their defaults.
func NewOptions() *Options {
	o := &Options{
		GenericServerRunOptions: genericoptions.NewServerRunOptionsForComponent("metrics gateway", utilcompatibility.DefaultComponentGlobalsRegistry),
		SecureServing:           genericoptions.NewSecureServingOptions().WithLoopback(),
		Authentication:          genericoptions.NewDelegatingAuthenticationOptions(),
		Authorization:           genericoptions.NewDelegatingAuthorizationOptions(),
		Audit:                   genericoptions.NewAuditOptions(),
		Features:                genericoptions.NewFeatureOptions(),
		Logging:                 logs.NewOptions(),
		Kubelet:                 scrape.DefaultKubeletOptions(),
		StoragePath:             "/var/lib/metrics-gateway",
		StorageRetention:        6 * time.Hour,
		StorageMinFreeSpace:     "128MiB",
		StorageWALCompression:   storage.DefaultOptions().WALCompression,
		QueryTimeout:            storage.DefaultOptions().QueryTimeout,
		QueryMaxSamples:         storage.DefaultOptions().MaxSamples,
		QueryAPI:                QueryAPIOptions{MaxConcurrent: 4, Limits: query.DefaultLimits()},
		QueryMaxConcurrency:     storage.DefaultOptions().MaxConcurrentQueries,
		// One pod body at the default pods.limits.bodySizeLimit: three times
		// that in the budget is what the shipped pod's GOMEMLIMIT has left
		// beside the head-series cap and the queries (MemoryBudget).
		PodScrapeMaxBytesInFlight: "32MiB",
		ServingCert:               defaultServingCertOptions(),
		Memory:                    defaultMemoryOptions(),
		RecordAutoscalers:         true,
		Shards:                    1,
		Shard:                     -1,
		Replay:                    autoscaling.ControllerDefaults(),
	}

	// An unprivileged port, as metrics-server's manifests use.
	o.SecureServing.BindPort = 10250
	o.GenericServerRunOptions.RequestTimeout = DefaultRequestTimeout
	return o
}

// Flags returns the flags, grouped as --help shows them.
func (o *Options) Flags() (fs cliflag.NamedFlagSets) {
	g := fs.FlagSet("metrics gateway")
	g.DurationVar(&o.Kubelet.Resolution, "metric-resolution", o.Kubelet.Resolution, "How often kubelets are scraped; also the scrape interval behind every metrics.k8s.io answer.")
	g.StringVar(&o.ConfigFile, "config", o.ConfigFile, "Path to the gateway's configuration file (kind GatewayConfig): annotated-pod scraping, extra Prometheus scrape_configs, scrape limits and the head-series cap (default: annotated pods scraped with default limits).")
	g.StringVar(&o.AdapterConfig, "adapter-config", o.AdapterConfig, "Path to a prometheus-adapter configuration file (rules, externalRules, resourceRules), used unchanged for custom.metrics.k8s.io and external.metrics.k8s.io (default: every scraped series with namespace and pod labels is a pods metric; x_total counters are served as rates named x).")
	g.StringVar(&o.Kubeconfig, "kubeconfig", o.Kubeconfig, "Path to a kubeconfig used to reach the API server and, with its credentials, the kubelets (default: in-cluster config).")
	g.StringVar(&o.StoragePath, "storage-path", o.StoragePath, "Directory of the embedded TSDB and its write-ahead log.")
	g.StringVar(&o.StorageWALCompression, "storage-wal-compression", o.StorageWALCompression, "Compression of the write-ahead log's records, as Prometheus' --storage.tsdb.wal-compression-type: snappy (as Prometheus), zstd or none. For kubelet records zstd writes 0.82 of snappy's bytes for about ten times its CPU, none 1.6 times snappy's bytes. A log written with one is read with any.")
	g.DurationVar(&o.StorageRetention, "storage-retention", o.StorageRetention, "How long samples are kept.")
	g.StringVar(&o.StorageRetentionSize, "storage-retention-size", o.StorageRetentionSize, "Most bytes the TSDB keeps on disk (blocks, write-ahead log and head chunks), e.g. 1536MiB; the oldest blocks are deleted first, as Prometheus' --storage.tsdb.retention.size. Keep it under the volume's size (the Deployment's emptyDir sizeLimit), or the kubelet evicts the pod. 0 for no bound.")
	g.StringVar(&o.StorageMinFreeSpace, "storage-min-free-space", o.StorageMinFreeSpace, "Free space the storage's filesystem must keep, e.g. 128MiB. Below it, scrapes are read but not stored (targets down with the reason, /readyz failing on storage-writable) until space returns, and the gateway does not start: on a full filesystem Prometheus' TSDB panics when it cannot write a full head chunk. 0 for no reserve.")
	g.DurationVar(&o.QueryTimeout, "query-timeout", o.QueryTimeout, "Maximum time one PromQL evaluation may take.")
	g.IntVar(&o.QueryMaxSamples, "query-max-samples", o.QueryMaxSamples, "Maximum samples one PromQL evaluation may load into memory.")
	g.StringVar(&o.PodScrapeMaxBytesInFlight, podBytesFlag, o.PodScrapeMaxBytesInFlight, "Most bytes read from annotated pods and held until their scrapes are stored, all pods together, e.g. 10MiB; at least pods.limits.bodySizeLimit. A pod scrape that finds no room waits, and fails at its timeout like any failed scrape (counted, logged); kubelet and other jobs' scrapes are never held. Pods are asked for uncompressed bodies; one that compresses anyway counts at its body size limit. Three bytes of memory budget per byte. When not given, lowered to fit a smaller memory limit, never below pods.limits.bodySizeLimit. 0 for no bound; 0 is required by a scrape job whose static targets or relabeling set __unix_socket__ (the bound dials every scrape itself, Prometheus' socket dialer included), and the gateway refuses to start otherwise.")
	g.IntVar(&o.QueryMaxConcurrency, "query-max-concurrency", o.QueryMaxConcurrency, "Maximum PromQL evaluations of the metrics APIs (metrics.k8s.io, custom and external metrics) at once; further requests wait for a slot until their deadline. The query API has its own bound, so dashboards cannot starve autoscalers.")
	g.BoolVar(&o.RecordAutoscalers, "record-autoscalers", o.RecordAutoscalers, "Record every HorizontalPodAutoscaler's replicas, limits, metrics and targets each round, as kube-state-metrics' kube_horizontalpodautoscaler_* series in the gateway's own job (docs/autoscaling.md). Needs list and watch on horizontalpodautoscalers.autoscaling; false where the ClusterRole lacks them.")
	g.BoolVar(&o.ShowVersion, "version", false, "Show version and exit.")

	a := fs.FlagSet("autoscaling replay")
	a.Float64Var(&o.Replay.Tolerance.Up, "hpa-tolerance", o.Replay.Tolerance.Up, "kube-controller-manager's --horizontal-pod-autoscaler-tolerance, which the gateway's replay of each HPA (the recorded recommendations, explain and the page) assumes; an HPA's own behavior tolerance takes precedence.")
	a.DurationVar(&o.Replay.DownscaleStabilization, "hpa-downscale-stabilization", o.Replay.DownscaleStabilization, "kube-controller-manager's --horizontal-pod-autoscaler-downscale-stabilization, for the replay.")
	a.DurationVar(&o.Replay.Timing.CPUInitializationPeriod, "hpa-cpu-initialization-period", o.Replay.Timing.CPUInitializationPeriod, "kube-controller-manager's --horizontal-pod-autoscaler-cpu-initialization-period, for the replay.")
	a.DurationVar(&o.Replay.Timing.InitialReadinessDelay, "hpa-initial-readiness-delay", o.Replay.Timing.InitialReadinessDelay, "kube-controller-manager's --horizontal-pod-autoscaler-initial-readiness-delay, for the replay.")

	so := fs.FlagSet("scale-out")
	so.IntVar(&o.Shards, "shards", o.Shards, "Number of gateway replicas the annotated-pod job and the config file's scrape_configs are divided among (a StatefulSet's replicas); each replica keeps the targets whose address hashes to its shard, as prometheus-operator shards, and still scrapes every kubelet for metrics.k8s.io. With the config file's remoteWrite (every replica ships what it scrapes) and queryBackend (custom, external and query APIs evaluated there): docs/scale-out.md. 1 scrapes every target.")
	so.IntVar(&o.Shard, "shard", o.Shard, "This replica's shard, from 0 to --shards - 1; -1 takes the ordinal of its StatefulSet pod's name (POD_NAME, else the hostname).")

	q := fs.FlagSet("query API")
	q.IntVar(&o.QueryAPI.MaxConcurrent, "query-api-max-concurrency", o.QueryAPI.MaxConcurrent, "Maximum evaluating requests (query, query_range, series, labels) of the Prometheus-compatible API (/prometheus/api/v1) at once; further requests wait up to --query-timeout. The metrics APIs have their own bound.")
	q.IntVar(&o.QueryAPI.Limits.MaxExpressionBytes, "query-max-expression-bytes", o.QueryAPI.Limits.MaxExpressionBytes, "Longest PromQL expression (query, match[]) the query API accepts, in bytes; longer ones are answered 400 before they are parsed, and larger forms 413.")
	q.IntVar(&o.QueryAPI.Limits.MaxNesting, "query-max-nesting", o.QueryAPI.Limits.MaxNesting, "Deepest nesting of parentheses, brackets and braces in an expression the query API accepts; deeper ones are answered 400 before they are parsed.")
	q.IntVar(&o.QueryAPI.Limits.MaxResults, "query-api-max-results", o.QueryAPI.Limits.MaxResults, "Most series, label names, label values or metadata entries one query API answer holds; a request's own limit applies when lower, and a capped answer carries Prometheus' \"results truncated\" warning.")
	q.StringVar(&o.QueryAPI.InsecureBindAddress, "query-api-insecure-bind-address", o.QueryAPI.InsecureBindAddress, "Also serve the Prometheus-compatible API over plain HTTP without authentication on this loopback address (e.g. 127.0.0.1:9090), at /api/v1 and /prometheus/api/v1, with the autoscaling page (/ui/) and the explain endpoint (/explain/) when --record-autoscalers is on, for kubectl port-forward. Off when empty; non-loopback addresses are refused.")

	o.ServingCert.addFlags(fs.FlagSet("serving certificate"))

	o.Memory.addFlags(fs.FlagSet("memory"))

	AddKubeletFlags(fs.FlagSet("kubelet client"), &o.Kubelet)

	o.GenericServerRunOptions.AddUniversalFlags(fs.FlagSet("generic"))
	o.SecureServing.AddFlags(fs.FlagSet("apiserver secure serving"))
	o.Authentication.AddFlags(fs.FlagSet("apiserver authentication"))
	o.Authorization.AddFlags(fs.FlagSet("apiserver authorization"))
	o.Audit.AddFlags(fs.FlagSet("apiserver audit log"))
	addFeatureFlags(fs.FlagSet("features"), o.Features)
	logsapi.AddFlags(o.Logging, fs.FlagSet("logging"))
	o.flags = fs
	return fs
}

// addFeatureFlags registers the apiserver's profiling flags, which the
// config applies. --enable-priority-and-fairness is left out: API Priority
// and Fairness would need FlowSchema informers and RBAC the gateway does not
// have, and a flag that is accepted and ignored tells an operator a bound
// exists that does not. The metrics APIs are bounded by
// --max-requests-inflight instead.
func addFeatureFlags(fs *pflag.FlagSet, o *genericoptions.FeatureOptions) {
	all := pflag.NewFlagSet("features", pflag.ContinueOnError)
	o.AddFlags(all)
	for _, name := range []string{"profiling", "contention-profiling", "debug-socket-path"} {
		fs.AddFlag(all.Lookup(name))
	}
}

// loadedFiles are the configuration files, read and validated.
type loadedFiles struct {
	gateway *scrape.GatewayConfig
	adapter *rules.Config
}

// configFiles are the configuration files as Validate read them; without
// a Validate that passed, it validates now.
func (o *Options) configFiles() (*loadedFiles, error) {
	if o.files == nil {
		if errs := o.Validate(); len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
	}
	return o.files, nil
}

// Validate reports every problem with the options at once.
func (o *Options) Validate() []error {
	o.files = nil
	errs := o.Kubelet.Validate()
	if r := o.Replay; r.Tolerance.Up < 0 || r.DownscaleStabilization < 0 || r.Timing.CPUInitializationPeriod < 0 || r.Timing.InitialReadinessDelay < 0 {
		errs = append(errs, fmt.Errorf("--hpa-tolerance and the --hpa-* durations must not be negative"))
	}
	if o.Shards < 1 || o.Shard < -1 || o.Shard >= o.Shards {
		errs = append(errs, fmt.Errorf("--shards must be at least 1 and --shard -1 or in [0, %d), got --shards=%d --shard=%d", max(o.Shards, 1), o.Shards, o.Shard))
	}
	gateway, configErrs := scrape.LoadConfigFile(o.ConfigFile)
	errs = append(errs, configErrs...)
	if err := o.checkPodBytes(gateway); err != nil {
		errs = append(errs, err)
	}
	adapter, adapterErrs := loadAdapterConfig(o.AdapterConfig)
	errs = append(errs, adapterErrs...)
	if len(configErrs) == 0 && len(adapterErrs) == 0 {
		o.files = &loadedFiles{gateway: gateway, adapter: adapter}
	}
	if o.StoragePath == "" {
		errs = append(errs, errors.New("storage-path must not be empty"))
	}
	if _, err := o.retentionBytes(); err != nil {
		errs = append(errs, err)
	}
	if _, err := o.minFreeBytes(); err != nil {
		errs = append(errs, err)
	}
	if err := storage.CheckWALCompression(o.StorageWALCompression); err != nil {
		errs = append(errs, fmt.Errorf("storage-wal-compression: %w", err))
	}
	if o.StorageRetention < time.Hour {
		errs = append(errs, fmt.Errorf("storage-retention must be at least 1h, got %v", o.StorageRetention))
	}
	if o.QueryTimeout <= 0 {
		errs = append(errs, errors.New("query-timeout must be positive"))
	}
	if o.QueryMaxSamples <= 0 {
		errs = append(errs, errors.New("query-max-samples must be positive"))
	}
	if o.QueryAPI.MaxConcurrent <= 0 {
		errs = append(errs, errors.New("query-api-max-concurrency must be positive"))
	}
	if o.QueryMaxConcurrency <= 0 {
		errs = append(errs, errors.New("query-max-concurrency must be positive"))
	}
	if l := o.QueryAPI.Limits; l.MaxExpressionBytes <= 0 || l.MaxNesting <= 0 || l.MaxResults <= 0 {
		errs = append(errs, errors.New("query-max-expression-bytes, query-max-nesting and query-api-max-results must be positive"))
	}
	if a := o.QueryAPI.InsecureBindAddress; a != "" {
		if err := checkLoopback(a); err != nil {
			errs = append(errs, fmt.Errorf("query-api-insecure-bind-address: %w", err))
		}
	}
	errs = append(errs, o.ServingCert.validate()...)
	errs = append(errs, o.Memory.validate()...)
	errs = append(errs, o.GenericServerRunOptions.Validate()...)
	errs = append(errs, o.SecureServing.Validate()...)
	errs = append(errs, o.Authentication.Validate()...)
	errs = append(errs, o.Authorization.Validate()...)
	errs = append(errs, o.Audit.Validate()...)
	// Applying the logging configuration is process-global: Run does it
	// once; Validate only checks.
	for _, e := range logsapi.Validate(o.Logging, nil, nil) {
		errs = append(errs, e)
	}
	return errs
}

// sharding is this replica's shard: --shard, or the pod's ordinal.
func (o *Options) sharding() (scrape.Sharding, error) {
	s := scrape.Sharding{Index: o.Shard, Count: o.Shards}
	if s.Count <= 1 || s.Index >= 0 {
		return s, nil
	}
	i, err := scrape.ShardOfPod(selfInstance())
	if err != nil {
		return s, err
	}
	if i >= s.Count {
		return s, fmt.Errorf("pod %s is ordinal %d, but --shards is %d: scale the StatefulSet and --shards together", selfInstance(), i, s.Count)
	}
	s.Index = i
	return s, nil
}

// ApplyLogging makes the logging flags take effect. Call it once, after Validate.
func (o *Options) ApplyLogging() error { return logsapi.ValidateAndApply(o.Logging, nil) }

// retentionBytes parses --storage-retention-size.
func (o *Options) retentionBytes() (int64, error) {
	return optionalSize("storage-retention-size", o.StorageRetentionSize, "1536MiB or 2GiB")
}

// minFreeBytes parses --storage-min-free-space.
func (o *Options) minFreeBytes() (int64, error) {
	return optionalSize("storage-min-free-space", o.StorageMinFreeSpace, "128MiB")
}

// optionalSize parses a size flag where "" and "0" mean none.
func optionalSize(flag, v, example string) (int64, error) {
	if v == "" || v == "0" {
		return 0, nil
	}
	b, err := units.ParseBase2Bytes(v)
	if err != nil || b < 0 {
		return 0, fmt.Errorf("%s %q: want a size such as %s", flag, v, example)
	}
	return int64(b), nil
}

const podBytesFlag = "pod-scrape-max-bytes-in-flight"

// podBytesInFlight parses --pod-scrape-max-bytes-in-flight.
func (o *Options) podBytesInFlight() (int64, error) {
	b, err := units.ParseBase2Bytes(o.PodScrapeMaxBytesInFlight)
	if err != nil || b < 0 {
		return 0, fmt.Errorf("%s %q: want a size such as 10MiB, or 0", podBytesFlag, o.PodScrapeMaxBytesInFlight)
	}
	return int64(b), nil
}

// checkPodBytes: a pod body as large as the body size limit must fit
// under the bound, or it could never be read. gw is nil when the config
// file did not load.
func (o *Options) checkPodBytes(gw *scrape.GatewayConfig) error {
	n, err := o.podBytesInFlight()
	if err != nil || n == 0 || gw == nil {
		return err
	}
	if b, err := units.ParseBase2Bytes(gw.Pods.Limits.BodySizeLimit); err == nil && int64(b) > n {
		return fmt.Errorf("%s %s is below pods.limits.bodySizeLimit %s: a body that large could never be read", podBytesFlag, o.PodScrapeMaxBytesInFlight, gw.Pods.Limits.BodySizeLimit)
	}
	return nil
}

// flagGiven says whether the flag name was given on the command line.
func (o *Options) flagGiven(name string) bool {
	for _, fs := range o.flags.FlagSets {
		if f := fs.Lookup(name); f != nil {
			return f.Changed
		}
	}
	return false
}

// Config turns validated options into a Config.
func (o *Options) Config() (*Config, error) {
	retentionBytes, err := o.retentionBytes()
	if err != nil {
		return nil, err
	}
	minFree, err := o.minFreeBytes()
	if err != nil {
		return nil, err
	}
	restConfig, err := o.restConfig()
	if err != nil {
		return nil, err
	}
	// Before the apiserver config: it reads the certificate files once.
	certManager, err := o.servingCert(restConfig)
	if err != nil {
		return nil, err
	}
	apiserver, err := o.apiserverConfig()
	if err != nil {
		return nil, err
	}
	creds, err := KubeletCredentials(restConfig, o.Kubeconfig, o.Kubelet.ClientCertFile != "")
	if err != nil {
		return nil, err
	}
	files, err := o.configFiles()
	if err != nil {
		return nil, err
	}
	// A copy: the memory fit below sets the head-series cap on it.
	gw := *files.gateway
	gateway, adapter := &gw, files.adapter
	sizes, err := o.fitRuntimeMemoryLimit(gateway)
	if err != nil {
		return nil, err
	}
	gateway.Storage.MaxHeadSeries = sizes.maxHeadSeries
	sharding, err := o.sharding()
	if err != nil {
		return nil, err
	}
	backend, err := gateway.Backend()
	if err != nil {
		return nil, fmt.Errorf("queryBackend: %w", err)
	}
	return &Config{
		Sharding:    sharding,
		Backend:     backend,
		Adapter:     adapter,
		Apiserver:   apiserver,
		Rest:        restConfig,
		Kubelet:     o.Kubelet,
		Credentials: creds,
		Gateway:     gateway,
		Storage: storage.Options{
			Path:                 o.StoragePath,
			Retention:            o.StorageRetention,
			RetentionBytes:       retentionBytes,
			MinFreeBytes:         minFree,
			WALCompression:       o.StorageWALCompression,
			QueryTimeout:         o.QueryTimeout,
			MaxSamples:           sizes.queryMaxSamples,
			MaxConcurrentQueries: o.QueryMaxConcurrency,
		},
		QueryAPI:            o.QueryAPI,
		PodMaxBytesInFlight: sizes.podBytesInFlight,
		RecordAutoscalers:   o.RecordAutoscalers,
		Replay:              o.replay(),
		CertManager:         certManager,
		Logger:              o.Logger,
	}, nil
}

func (o *Options) apiserverConfig() (*genericapiserver.Config, error) {
	if err := o.SecureServing.MaybeDefaultWithSelfSignedCerts("localhost", nil, []net.IP{net.ParseIP("127.0.0.1")}); err != nil {
		return nil, fmt.Errorf("create self-signed certificates: %w", err)
	}
	if err := o.GenericServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return nil, err
	}
	c := genericapiserver.NewConfig(api.Codecs)
	if err := o.GenericServerRunOptions.ApplyTo(c); err != nil {
		return nil, err
	}
	if err := o.SecureServing.ApplyTo(&c.SecureServing, &c.LoopbackClientConfig); err != nil {
		return nil, err
	}
	if !o.DisableAuthForTesting {
		// Outside a cluster, --kubeconfig also reaches TokenReview and
		// SubjectAccessReview unless their own flags say otherwise.
		if o.Kubeconfig != "" {
			if o.Authentication.RemoteKubeConfigFile == "" {
				o.Authentication.RemoteKubeConfigFile = o.Kubeconfig
			}
			if o.Authorization.RemoteKubeConfigFile == "" {
				o.Authorization.RemoteKubeConfigFile = o.Kubeconfig
			}
		}
		if err := o.Authentication.ApplyTo(&c.Authentication, c.SecureServing, nil); err != nil {
			return nil, fmt.Errorf("delegated authentication: %w", err)
		}
		c.Authentication.Authenticator = anonymousOnlyFor(c.Authentication.Authenticator, o.Authorization.AlwaysAllowPaths...)
		if err := o.Authorization.ApplyTo(&c.Authorization); err != nil {
			return nil, fmt.Errorf("delegated authorization: %w", err)
		}
	}
	if err := o.Audit.ApplyTo(c); err != nil {
		return nil, err
	}
	c.EnableProfiling = o.Features.EnableProfiling
	c.EnableContentionProfiling = o.Features.EnableContentionProfiling
	c.DebugSocketPath = o.Features.DebugSocketPath
	defs, namer := openAPIDefinitions()
	c.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(defs, namer)
	c.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(defs, namer)
	c.OpenAPIConfig.Info.Title = "metrics-gateway"
	c.OpenAPIV3Config.Info.Title = "metrics-gateway"
	c.OpenAPIConfig.Info.Version = strings.Split(Version, "-")[0]
	c.OpenAPIV3Config.Info.Version = c.OpenAPIConfig.Info.Version
	c.EffectiveVersion = utilcompatibility.DefaultBuildEffectiveVersion()
	// /metrics is served by the gateway itself, merging its own registry.
	c.EnableMetrics = false
	return c, nil
}

// openAPIDefinitions covers the three API groups served: metrics.k8s.io
// (metrics-server's generated definitions) and the custom and external
// groups (custom-metrics-apiserver's), named through both schemes.
func openAPIDefinitions() (openapicommon.GetOpenAPIDefinitions, *openapinamer.DefinitionNamer) {
	getters := []openapicommon.GetOpenAPIDefinitions{
		generatedopenapi.GetOpenAPIDefinitions,
		metricsV1Definitions,
		cmopenapicore.GetOpenAPIDefinitions,
		cmopenapicustom.GetOpenAPIDefinitions,
		cmopenapiexternal.GetOpenAPIDefinitions,
	}
	defs := func(ref openapicommon.ReferenceCallback) map[string]openapicommon.OpenAPIDefinition {
		out := map[string]openapicommon.OpenAPIDefinition{}
		for _, g := range getters {
			for k, v := range g(ref) {
				out[k] = v
			}
		}
		return out
	}
	return defs, openapinamer.NewDefinitionNamer(api.Scheme, cmapiserver.Scheme)
}

// metricsV1Definitions are the OpenAPI definitions of metrics.k8s.io/v1,
// which metrics-server's generated ones (v1beta1 only) lack. k8s.io/metrics
// generates v1 from the same types under another version, so each is the
// v1beta1 definition with its name and every reference moved to v1.
func metricsV1Definitions(ref openapicommon.ReferenceCallback) map[string]openapicommon.OpenAPIDefinition {
	const beta, ga = "io.k8s.metrics.pkg.apis.metrics.v1beta1.", "io.k8s.metrics.pkg.apis.metrics.v1."
	moved := func(name string) string {
		if rest, ok := strings.CutPrefix(name, beta); ok {
			return ga + rest
		}
		return name
	}
	out := map[string]openapicommon.OpenAPIDefinition{}
	for name, def := range generatedopenapi.GetOpenAPIDefinitions(func(name string) spec.Ref { return ref(moved(name)) }) {
		if !strings.HasPrefix(name, beta) {
			continue
		}
		deps := make([]string, len(def.Dependencies))
		for i, d := range def.Dependencies {
			deps[i] = moved(d)
		}
		def.Dependencies = deps
		out[moved(name)] = def
	}
	return out
}

// replay is the replay's settings: one tolerance both ways, as the
// controller's flag.
func (o *Options) replay() autoscaling.Options {
	r := o.Replay
	r.Tolerance.Down = r.Tolerance.Up
	return r
}

// checkLoopback accepts host:port only on a loopback address.
func checkLoopback(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if port == "" {
		return fmt.Errorf("%q has no port", addr)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q is not a loopback address: the plain-HTTP listener has no authentication", addr)
	}
	return nil
}

// LoadClientConfig is the client config the gateway and doctor use: the
// kubeconfig file when given, else the in-cluster config.
func LoadClientConfig(kubeconfig string) (*rest.Config, error) {
	var (
		c   *rest.Config
		err error
	)
	if kubeconfig != "" {
		rules := &clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}
		c, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	} else {
		c, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("kubernetes client config: %w", err)
	}
	return c, nil
}

func (o *Options) restConfig() (*rest.Config, error) {
	c, err := LoadClientConfig(o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	c.ContentType = "application/vnd.kubernetes.protobuf"
	// No gzip: kube-apiserver compresses lists and watch streams for a
	// client that accepts it, and at 100 nodes reading the watched Node
	// updates through gzip was about 4% of the gateway's idle CPU
	// (docs/benchmarks.md, "Watches without gzip"). The API server is on
	// the cluster network, where the bytes cost less than deflating them on
	// one side and inflating them on the other.
	c.DisableCompression = true
	if err := rest.SetKubernetesDefaults(c); err != nil {
		return nil, err
	}
	return c, nil
}

// AddKubeletFlags adds the flags that say how kubelets are found and
// reached, metrics-server's names and defaults. doctor shares them, so its
// kubelet probe runs with the gateway's settings.
func AddKubeletFlags(k *pflag.FlagSet, o *scrape.KubeletOptions) {
	k.BoolVar(&o.InsecureTLS, "kubelet-insecure-tls", o.InsecureTLS, "Do not verify the serving certificates of kubelets. For testing only.")
	k.BoolVar(&o.UseNodeStatusPort, "kubelet-use-node-status-port", o.UseNodeStatusPort, "Use the kubelet port in the node status (status.daemonEndpoints). Takes precedence over --kubelet-port.")
	k.IntVar(&o.Port, "kubelet-port", o.Port, "The port to use to connect to kubelets.")
	k.StringSliceVar(&o.PreferredAddressTypes, "kubelet-preferred-address-types", o.PreferredAddressTypes, "The priority of node address types used to reach a kubelet.")
	k.StringVar(&o.CAFile, "kubelet-certificate-authority", o.CAFile, "Path to the CA that verifies kubelet serving certificates.")
	k.StringVar(&o.ClientKeyFile, "kubelet-client-key", o.ClientKeyFile, "Path to a client key file for TLS to kubelets.")
	k.StringVar(&o.ClientCertFile, "kubelet-client-certificate", o.ClientCertFile, "Path to a client certificate file for TLS to kubelets.")
	k.DurationVar(&o.RequestTimeout, "kubelet-request-timeout", o.RequestTimeout, "How long one scrape of a kubelet may take.")
	k.StringVarP(&o.NodeSelector, "node-selector", "l", o.NodeSelector, "Label selector of the nodes to scrape (e.g. -l key1=value1,key2!=value2).")
	k.StringVar(&o.ServiceAccount, "kubelet-service-account", o.ServiceAccount, "ServiceAccount (namespace/name) whose short-lived tokens, requested through the TokenRequest API and renewed before expiry, are sent to kubelets instead of the gateway's own credentials: give it only get on nodes/metrics, so a node that records the token gains nothing else. Empty sends the gateway's own credentials, as metrics-server does.")
}

// KubeletCredentials derives what Prometheus' scrape client presents to kubelets
// from the client config, as metrics-server reuses its client config.
func KubeletCredentials(c *rest.Config, kubeconfig string, ownClientCert bool) (scrape.Credentials, error) {
	if (c.ExecProvider != nil || c.AuthProvider != nil) && !ownClientCert {
		if c.CertData == nil && c.CertFile == "" {
			return scrape.Credentials{}, errors.New("the kubeconfig authenticates with an exec or auth-provider plugin, which kubelet scrapes cannot use: give --kubelet-client-certificate and --kubelet-client-key, or a kubeconfig with a token or client certificate")
		}
	}
	return scrape.Credentials{
		Kubeconfig:      kubeconfig,
		BearerToken:     c.BearerToken,
		BearerTokenFile: c.BearerTokenFile,
		CAData:          c.CAData,
		CAFile:          c.CAFile,
		CertData:        c.CertData,
		KeyData:         c.KeyData,
		CertFile:        c.CertFile,
		KeyFile:         c.KeyFile,
	}, nil
}
