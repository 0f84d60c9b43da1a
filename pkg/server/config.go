package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/prometheus/config"
	promlabels "github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	apimetrics "k8s.io/apiserver/pkg/endpoints/metrics"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/metrics/legacyregistry"
	_ "k8s.io/component-base/metrics/prometheus/restclient" // client-go metrics, process-global: registered once, here.
	"k8s.io/klog/v2"
	cmapiserver "sigs.k8s.io/custom-metrics-apiserver/pkg/apiserver"

	"github.com/metrics-gateway/metrics-gateway/pkg/autoscaling"
	"github.com/metrics-gateway/metrics-gateway/pkg/backend"
	"github.com/metrics-gateway/metrics-gateway/pkg/certs"
	"github.com/metrics-gateway/metrics-gateway/pkg/custom"
	"github.com/metrics-gateway/metrics-gateway/pkg/pods"
	"github.com/metrics-gateway/metrics-gateway/pkg/query"
	"github.com/metrics-gateway/metrics-gateway/pkg/resource"
	"github.com/metrics-gateway/metrics-gateway/pkg/rules"
	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
	"github.com/metrics-gateway/metrics-gateway/pkg/web"
)

// Config is everything needed to build a running gateway.
type Config struct {
	Apiserver   *genericapiserver.Config
	Rest        *rest.Config
	Kubelet     scrape.KubeletOptions
	Credentials scrape.Credentials
	// Gateway is the defaulted, validated --config file.
	Gateway *scrape.GatewayConfig
	// Adapter is the prometheus-adapter rules file; nil means the
	// zero-config default rules.
	Adapter *rules.Config
	Storage storage.Options
	// QueryAPI configures the Prometheus-compatible API.
	QueryAPI QueryAPIOptions
	// PodMaxBytesInFlight bounds the bytes read from annotated pods whose
	// scrape is not stored yet; 0 for no bound.
	PodMaxBytesInFlight int64
	// RecordAutoscalers exports every HorizontalPodAutoscaler for the self
	// job to store (pkg/autoscaling).
	RecordAutoscalers bool
	// Replay is the controller's settings the replay assumes.
	Replay autoscaling.Options
	// CertManager keeps the self-managed serving certificate fresh; nil
	// when the certificate is given or self-signed.
	CertManager *certs.Manager
	// Logger is where the gateway's own components log; nil logs through
	// klog.
	Logger *slog.Logger
	// Scale-out mode (docs/scale-out.md): Sharding divides the pod and
	// user jobs among replicas; Backend, from the config file's
	// queryBackend, evaluates the custom, external and query APIs. The
	// config file's remoteWrite ships what is stored.
	Sharding scrape.Sharding
	Backend  *scrape.QueryBackend
}

// Complete builds the gateway: it opens storage (replaying its WAL), sets up
// informers, scraping and the API server. Nothing runs until RunUntil.
func (c *Config) Complete() (_ *Server, err error) {
	logger := c.Logger
	if logger == nil {
		logger = slog.New(logr.ToSlogHandler(klog.Background()))
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var undo cleanups
	defer func() {
		if err != nil {
			err = errors.Join(err, undo.run())
		}
	}()

	store, err := openStorage(c.Storage, logger, reg)
	if err != nil {
		return nil, err
	}
	undo.add(store.Close)
	// The resource API's tails fill from the first scrape's commit on, so
	// they exist before scraping starts. An adapter file with
	// resourceRules answers metrics.k8s.io by its own queries instead.
	var tails resource.Tails
	if c.Adapter == nil || c.Adapter.ResourceRules == nil {
		if tails, err = resource.NewTails(store, nil); err != nil {
			return nil, err
		}
	}
	s := &Server{certs: c.CertManager, store: store}
	if err := c.buildScaleOut(s, reg, logger, &undo); err != nil {
		return nil, err
	}
	scrapeCfg, err := c.buildScraping(s, reg, logger, &undo)
	if err != nil {
		return nil, err
	}
	if err := c.buildAPIServer(s, tails, scrapeCfg, reg, logger, &undo); err != nil {
		return nil, err
	}
	if err := s.addHealthChecks(); err != nil {
		return nil, err
	}
	return s, nil
}

// cleanups undo what Complete built when a later step fails.
type cleanups []func() error

func (u *cleanups) add(f func() error) { *u = append(*u, f) }

func (u cleanups) run() error {
	var err error
	for _, f := range u {
		err = errors.Join(err, f())
	}
	return err
}

// openStorage opens the TSDB and registers the gauges that report on it.
func openStorage(o storage.Options, logger *slog.Logger, reg *prometheus.Registry) (*storage.Storage, error) {
	store, err := storage.Open(o, logger, reg)
	if err != nil {
		return nil, err
	}
	storageReady := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "metrics_gateway_storage_ready",
		Help: "1 when the embedded TSDB is open and answering queries.",
	}, func() float64 {
		if store.Ready() == nil {
			return 1
		}
		return 0
	})
	headSeries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "metrics_gateway_head_series",
		Help: "Series in the TSDB's in-memory head.",
	}, func() float64 { return float64(store.HeadSeries()) })
	reg.MustRegister(storageReady, headSeries)
	return store, nil
}

// buildScraping builds the gateway's self-metrics listener, the Node and
// Pod informers and the scrape manager into s, and returns the loaded
// scrape configuration. Nothing is started.
func (c *Config) buildScraping(s *Server, reg *prometheus.Registry, logger *slog.Logger, undo *cleanups) (*config.Config, error) {
	// The gateway scrapes its own /metrics from a loopback listener into its
	// TSDB, so its health charts through the same query API.
	selfToken, err := newSelfToken()
	if err != nil {
		return nil, err
	}
	if s.self, err = newLoopbackServer("127.0.0.1:0", selfMetricsHandler(selfToken, selfGathererHandler(reg))); err != nil {
		return nil, fmt.Errorf("self-metrics listener: %w", err)
	}
	undo.add(s.self.close)
	// Nodes and pods are read as protobuf, as metrics-server reads them.
	protoRest := rest.CopyConfig(c.Rest)
	protoRest.ContentType = runtime.ContentTypeProtobuf
	protoRest.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	client, err := kubernetes.NewForConfig(protoRest)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	kubeletCreds := c.Credentials
	if c.Kubelet.ServiceAccount != "" {
		if s.kubeletToken, err = newKubeletToken(context.Background(), client, c.Kubelet.ServiceAccount, logger, reg); err != nil {
			return nil, err
		}
		undo.add(s.kubeletToken.close)
		kubeletCreds = c.Credentials.WithBearerOnly("", s.kubeletToken.file)
	}
	jobs, err := c.scrapeJobs(s.self.addr(), selfToken, kubeletCreds)
	if err != nil {
		return nil, err
	}
	scrapeCfg, err := scrape.LoadConfig(logger, jobs...)
	if err != nil {
		return nil, err
	}
	if err := c.Sharding.Apply(scrapeCfg); err != nil {
		return nil, err
	}
	var app promstorage.AppendableV2 = s.store.Appendable()
	if s.remoteWrite != nil {
		app = s.remoteWrite.Appendable(app)
	}
	// The agent's series count against the cap too: they are held in
	// memory until sent and no longer scraped.
	inMemory := func() uint64 { return s.store.HeadSeries() + s.remoteWrite.AgentSeries() }
	app, err = scrape.LimitHeadSeries(app, c.Gateway.Storage.MaxHeadSeries, inMemory, logger, reg)
	if err != nil {
		return nil, err
	}
	s.nodeInformers = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slim))
	nodes := s.nodeInformers.Core().V1().Nodes().Informer()
	// One pod informer serves metrics.k8s.io, the custom metrics API's pod
	// selectors and the annotated-pod job's discovery.
	s.podInformer = pods.NewInformer(client)
	s.informersSynced = []func() bool{nodes.HasSynced, s.podInformer.HasSynced}
	if c.RecordAutoscalers {
		if err := c.buildAutoscaling(s, reg); err != nil {
			return nil, err
		}
	}
	gcHeadroom.count(func(countNodes bool) int {
		if countNodes {
			return len(nodes.GetStore().ListKeys())
		}
		return len(s.podInformer.GetStore().ListKeys())
	})
	if s.scraper, err = scrape.NewManager(scrapeCfg, app, scrape.ManagerOptions{
		Informers:           scrape.Informers{Pods: s.podInformer, Nodes: nodes, Cadvisor: c.Gateway.Cadvisor.Enabled},
		PodMaxBytesInFlight: c.PodMaxBytesInFlight,
	}, logger, reg); err != nil {
		return nil, err
	}
	undo.add(func() error { s.scraper.Stop(); return nil })
	if s.remoteWrite != nil {
		s.remoteWrite.SetScrapeManager(s.scraper.Targets())
	}
	return scrapeCfg, nil
}

// backendDiscoveryTTL is how old the custom metrics list may get when it
// is read from a query backend: a new metric is listed within it.
const backendDiscoveryTTL = 30 * time.Second

// buildScaleOut builds the remote-write queues and the query backend into
// s when the config file asks for them.
func (c *Config) buildScaleOut(s *Server, reg *prometheus.Registry, logger *slog.Logger, undo *cleanups) error {
	rwCfg, err := c.Gateway.RemoteWriteConfig(selfInstance())
	if err != nil {
		return err
	}
	switch {
	case rwCfg != nil && c.Backend != nil:
		// Custom, external and query API answers come from the engine: the
		// TSDB keeps only what the replica answers from itself.
		s.remoteWrite, err = s.store.NewRemoteWriteAgent(rwCfg, scrape.LocalJob, logger, reg)
	case rwCfg != nil:
		s.remoteWrite, err = s.store.NewRemoteWrite(rwCfg, logger, reg)
	}
	if err != nil {
		return err
	}
	if s.remoteWrite != nil {
		// Before the TSDB's close, which undo runs first.
		*undo = append(cleanups{s.remoteWrite.Close}, *undo...)
	}
	if c.Backend != nil {
		var scope []*promlabels.Matcher
		for name, value := range c.Gateway.ExternalLabels {
			scope = append(scope, promlabels.MustNewMatcher(promlabels.MatchEqual, name, value))
		}
		slices.SortFunc(scope, func(a, b *promlabels.Matcher) int { return strings.Compare(a.Name, b.Name) })
		if s.backend, err = backend.New(backend.Options{
			URL:     c.Backend.URL.String(),
			HTTP:    c.Backend.HTTPClientConfig,
			Scope:   scope,
			Timeout: c.Storage.QueryTimeout,
			Logger:  logger.With("component", "query-backend"),
		}); err != nil {
			return err
		}
	}
	return nil
}

// buildAutoscaling builds the autoscaling history into s: the HPA
// informer, the collector of its series and the recorder that replays each
// HPA beside the controller. buildAPIServer adds the metrics sources.
func (c *Config) buildAutoscaling(s *Server, reg *prometheus.Registry) error {
	// Not a readiness condition: HPAs only feed the history and the page.
	hpas := s.nodeInformers.Autoscaling().V2().HorizontalPodAutoscalers()
	hpas.Informer()
	api, err := autoscaling.NewAPIReader(c.Rest)
	if err != nil {
		return fmt.Errorf("autoscaling: %w", err)
	}
	s.autoscaling = &autoscaling.Sources{
		HPAs:      hpas.Lister(),
		PodLister: pods.Lister(s.podInformer),
		Targets:   api,
		// Under the self job's labels, as the gateway's own series.
		History: &autoscaling.History{Q: s.store, Timeout: c.Storage.QueryTimeout, Job: scrape.SelfJobName, Instance: selfInstance()},
	}
	var recorded promstorage.AppendableV2 = s.store.Appendable()
	if s.remoteWrite != nil {
		// Its series are written to the engine too.
		recorded = s.remoteWrite.Appendable(recorded)
	}
	s.recorder = &autoscaling.Recorder{Sources: s.autoscaling, Options: c.Replay, Interval: c.Kubelet.Resolution, Append: recorded}
	reg.MustRegister(autoscaling.Collector{HPAs: hpas.Lister()})
	return nil
}

// selfInstance is the instance label of the gateway's own series: its
// pod's name (the Deployment gives every replica one hostname, so the
// hostname no longer tells replicas apart), else the hostname.
func selfInstance() string {
	if instance := os.Getenv("POD_NAME"); instance != "" {
		return instance
	}
	if instance, err := os.Hostname(); err == nil && instance != "" {
		return instance
	}
	return scrape.SelfJobName
}

// buildAPIServer builds the one API server into s: custom and external
// metrics, metrics.k8s.io, /metrics and the query API, and the optional
// plain-HTTP query listener.
func (c *Config) buildAPIServer(s *Server, tails resource.Tails, scrapeCfg *config.Config, reg *prometheus.Registry, logger *slog.Logger, undo *cleanups) error {
	metaClient, err := metadata.NewForConfig(c.Rest)
	if err != nil {
		return fmt.Errorf("metadata client: %w", err)
	}
	mapper, err := newRESTMapper(c.Rest)
	if err != nil {
		return err
	}
	s.objects = newObjectLister(pods.Lister(s.podInformer), s.podInformer.HasSynced, metaClient, mapper)
	undo.add(func() error { s.objects.shutdown(); return nil })
	compiled, err := c.compileRules(mapper)
	if err != nil {
		return err
	}
	customProvider, err := c.customProvider(s, compiled, mapper)
	if err != nil {
		return err
	}

	var nodeSelector []labels.Requirement
	if sel := strings.TrimSpace(c.Kubelet.NodeSelector); sel != "" {
		if nodeSelector, err = labels.ParseToRequirements(sel); err != nil {
			return fmt.Errorf("node-selector: %w", err)
		}
	}

	registerAPIMetrics()
	c.Apiserver.BuildHandlerChainFunc = withPrometheusTimeout(withSelectorValidation(withListHeadroom(gcHeadroom, c.Apiserver.BuildHandlerChainFunc)))
	// custom-metrics-apiserver builds the GenericAPIServer with the custom
	// and external groups; metrics.k8s.io is installed into the same one,
	// so all three share port, certificate, authn/authz and /metrics.
	cmsConfig := &cmapiserver.Config{GenericConfig: c.Apiserver}
	cms, err := cmsConfig.Complete(nil).New("metrics-gateway", customProvider, customProvider)
	if err != nil {
		return fmt.Errorf("create API server: %w", err)
	}
	s.api = cms.GenericAPIServer
	// The secure port drains for up to the request timeout; the loopback
	// listeners drain beside it for as long (RunUntil).
	s.drainTimeout = c.Apiserver.RequestTimeout
	addAggregatedDiscovery(s.api)
	s.api.Handler.NonGoRestfulMux.Handle("/metrics", metricsHandler(reg))

	freshness := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "metrics_server_api_metric_freshness_seconds",
		Help:    "Age of the usage metrics.k8s.io answered (metrics-server's histogram, same name and buckets).",
		Buckets: prometheus.ExponentialBuckets(1, 1.364, 20),
	})
	if err := reg.Register(freshness); err != nil {
		return fmt.Errorf("register freshness: %w", err)
	}
	if s.autoscaling != nil {
		s.autoscaling.Resource = c.resourceGetterAt(s.store, compiled)
		s.autoscaling.Custom = customProvider
	}
	if err := resource.Install(s.api, resource.InstallOptions{
		Getter:       c.resourceGetter(s.store, tails, compiled),
		Pods:         pods.MetadataLister(s.podInformer),
		Nodes:        s.nodeInformers.Core().V1().Nodes().Lister(),
		NodeSelector: nodeSelector,
		Freshness:    freshness,
	}); err != nil {
		return fmt.Errorf("install metrics.k8s.io: %w", err)
	}

	return c.buildQueryAPI(s, scrapeCfg, reg, logger, undo)
}

// customProvider answers custom and external metrics from the embedded
// engine, or from the query backend in scale-out mode.
func (c *Config) customProvider(s *Server, compiled *rules.Rules, mapper meta.RESTMapper) (*custom.Provider, error) {
	var customStore custom.Store = s.store
	var discoveryTTL time.Duration // the provider's default, 1s
	if s.backend != nil {
		customStore = s.backend
		// Discovery reads every series the rules select over the engine's
		// series API: at 100 x 70 with every pod annotated that was a
		// quarter of a replica's CPU and most of the querier's at a 1s
		// TTL (docs/scale-out.md). Requests still use the last list and
		// refresh it in the background.
		discoveryTTL = backendDiscoveryTTL
	}
	return custom.NewProvider(custom.Options{
		Storage:  customStore,
		CacheTTL: discoveryTTL,
		Rules:    compiled,
		Lister:   s.objects,
		Mapper:   mapper,
		Timeout:  c.Storage.QueryTimeout,
	})
}

// buildQueryAPI mounts the Prometheus-compatible query API on s's API
// server and, when configured, on its plain-HTTP loopback listener.
func (c *Config) buildQueryAPI(s *Server, scrapeCfg *config.Config, reg *prometheus.Registry, logger *slog.Logger, undo *cleanups) error {
	engine, queryable := s.store.Engine(), s.store.SampleAndChunkQueryable()
	if s.backend != nil {
		engine, queryable = s.backend.QueryEngine(), s.backend.SampleAndChunkQueryable()
	}
	queryHandler, err := query.NewHandler(query.Options{
		Engine:        engine,
		Queryable:     queryable,
		Exemplars:     s.store.ExemplarQueryable(),
		Stats:         s.store.Stats(),
		Targets:       s.scraper.Targets(),
		Config:        func() config.Config { return *scrapeCfg },
		Ready:         s.store.Ready,
		StoragePath:   s.store.Options().Path,
		Retention:     s.store.Options().Retention,
		LookbackDelta: storage.LookbackDelta,
		QueryTimeout:  s.store.Options().QueryTimeout,
		MaxConcurrent: c.QueryAPI.MaxConcurrent,
		Limits:        c.QueryAPI.Limits,
		Version:       Version,
		Logger:        logger,
		Registerer:    reg,
		// The TSDB and engine metrics the status endpoints read are in reg;
		// the legacy registry repeats the Go collector.
		Gatherer: reg,
	})
	if err != nil {
		return err
	}
	mountQueryAPI(s.api.Handler.NonGoRestfulMux, queryHandler)
	var pages http.Handler
	if s.autoscaling != nil {
		o := web.Options{Sources: s.autoscaling, Explain: s.recorder.Options, Query: s.store, Timeout: c.Storage.QueryTimeout}
		if s.backend != nil {
			o.Graph = s.backend
		}
		pages = web.NewHandler(o)
		mountPages(s.api.Handler.NonGoRestfulMux, pages)
	}
	if a := c.QueryAPI.InsecureBindAddress; a != "" {
		if s.insecureQuery, err = newLoopbackServer(a, insecureQueryMux(queryHandler, pages)); err != nil {
			return fmt.Errorf("query API insecure listener: %w", err)
		}
		undo.add(s.insecureQuery.close)
	}
	return nil
}

// scrapeJobs renders every scrape job: kubelets (with kubeletCreds), the
// gateway itself (at selfAddr, with selfToken), the kubelets' cAdvisor when
// enabled (kubeletCreds), and the jobs of the --config file.
func (c *Config) scrapeJobs(selfAddr, selfToken string, kubeletCreds scrape.Credentials) ([]string, error) {
	kubelet, err := scrape.KubeletJobYAML(c.Kubelet, kubeletCreds)
	if err != nil {
		return nil, err
	}
	self, err := scrape.SelfJobYAML(selfAddr, selfToken, selfInstance(), c.Kubelet.Interval())
	if err != nil {
		return nil, err
	}
	jobs := []string{kubelet, self}
	cadvisor, err := scrape.CadvisorJobYAML(c.Kubelet, kubeletCreds, c.Gateway.Cadvisor)
	if err != nil {
		return nil, err
	}
	if cadvisor != "" {
		jobs = append(jobs, cadvisor)
	}
	user, err := c.Gateway.ScrapeDocs(c.Credentials)
	if err != nil {
		return nil, err
	}
	return append(jobs, user...), nil
}

// The apiserver's API metrics live in the process-global legacy registry,
// where a second registration fails: a process registers them once, however
// many servers it builds (tests build several).
var apiMetricsOnce sync.Once

func registerAPIMetrics() {
	apiMetricsOnce.Do(apimetrics.Register)
}

// selfGathererHandler serves the gateway's own scrape job: only the
// families it keeps, uncompressed (it is read over loopback).
func selfGathererHandler(reg *prometheus.Registry) http.Handler {
	keep := scrape.SelfFamilyFilter()
	all := prometheus.Gatherers{legacyregistry.DefaultGatherer, reg}
	kept := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		fams, err := all.Gather()
		out := fams[:0]
		for _, f := range fams {
			if keep(f.GetName()) {
				out = append(out, f)
			}
		}
		return out, err
	})
	return promhttp.HandlerFor(kept, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, DisableCompression: true})
}

// metricsHandler serves the gateway's registry and the apiserver's own
// (request metrics, client-go metrics) on one page.
func metricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(prometheus.Gatherers{legacyregistry.DefaultGatherer, reg}, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
