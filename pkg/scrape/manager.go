package scrape

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	_ "github.com/prometheus/prometheus/discovery/kubernetes" // registers kubernetes_sd_configs; never discovery/install.
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	promscrape "github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"k8s.io/client-go/tools/cache"
	"sigs.k8s.io/yaml"
)

// LoadConfig parses documents holding Prometheus scrape_configs into one
// config through config.Load, so every default and check of Prometheus
// applies to built-in and user jobs alike. Documents are merged at the YAML
// level: re-marshalling a loaded config would mask its secrets.
func LoadConfig(logger *slog.Logger, docs ...string) (*config.Config, error) {
	var jobs []any
	for i, d := range docs {
		var doc map[string]any
		if err := yaml.UnmarshalStrict([]byte(d), &doc); err != nil {
			return nil, fmt.Errorf("scrape config document %d: %w", i, err)
		}
		for k, v := range doc {
			if k != "scrape_configs" {
				return nil, fmt.Errorf("scrape config document %d: unsupported key %q (only scrape_configs)", i, k)
			}
			list, ok := v.([]any)
			if !ok && v != nil {
				return nil, fmt.Errorf("scrape config document %d: scrape_configs is not a list", i)
			}
			jobs = append(jobs, list...)
		}
	}
	merged, err := yaml.Marshal(map[string]any{"scrape_configs": jobs})
	if err != nil {
		return nil, fmt.Errorf("merge scrape configs: %w", err)
	}
	cfg, err := config.Load(string(merged), logger)
	if err != nil {
		return nil, fmt.Errorf("load scrape configs: %w", err)
	}
	return cfg, nil
}

// Manager runs discovery and scraping for a set of jobs.
type Manager struct {
	// inlined is the loaded config with the kubelet jobs' files inlined
	// (inlineFiles), and what watchFiles needs to renew them.
	inlined  *config.Config
	files    []fileRef
	contents []string
	logger   *slog.Logger

	// sets runs the built-in jobs' discovery and sends every job's
	// targets to scrape; discovery, Prometheus' discovery manager, runs
	// users' jobs' only when there are any (nil otherwise).
	sets      *targetSets
	discovery *discovery.Manager
	scrape    *promscrape.Manager
	recorder  *recorder
	// ratesReady latches CheckRatesReady's first pass.
	ratesReady atomic.Bool
	// nodes is the node informer (nil without one): with no node in the
	// cluster, no kubelet target is to be waited for.
	nodes     cache.SharedIndexInformer
	cancel    context.CancelFunc
	ctx       context.Context
	intervals map[string]time.Duration
	stopOnce  sync.Once
}

// Informers are the gateway's shared informers that built-in jobs discover
// their targets from. A nil one leaves its jobs to Prometheus' discovery.
type Informers struct {
	// Pods holds *pods.Pod (pods.NewInformer): the pod job's targets.
	Pods cache.SharedIndexInformer
	// Nodes holds *corev1.Node: the kubelet job's targets, and the
	// cAdvisor job's when Cadvisor says that job is the built-in one (a
	// user may name a job of their own kubernetes-cadvisor while the
	// built-in one is off).
	Nodes    cache.SharedIndexInformer
	Cadvisor bool
}

// ManagerOptions are what NewManager needs besides the scrape configuration.
type ManagerOptions struct {
	Informers Informers
	// PodMaxBytesInFlight bounds the bytes read from annotated pods whose
	// scrape has not finished (podBytes); 0 leaves them unbounded.
	PodMaxBytesInFlight int64

	// dial replaces the scrape manager's dialer; tests only.
	dial dialFunc
}

// NewManager builds discovery and scrape managers for cfg (from LoadConfig),
// writing into app. The built-in jobs discover their targets from
// o.Informers, run by targetSets; users' jobs use Prometheus' discovery
// manager. Its metrics, and those of the Prometheus libraries, go to reg,
// which must not be shared with another Manager.
func NewManager(cfg *config.Config, app storage.AppendableV2, o ManagerOptions, logger *slog.Logger, reg prometheus.Registerer) (*Manager, error) {
	inf := o.Informers
	if reg == nil {
		return nil, errors.New("scrape: nil registerer")
	}
	cfg, files, contents, err := inlineFiles(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubelet job files: %w", err)
	}
	scs, err := cfg.GetScrapeConfigs()
	if err != nil {
		return nil, fmt.Errorf("scrape configs: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	sdCfgs, intervals := discoveryConfigs(scs, inf)
	own, others := ownDiscovery(sdCfgs)
	sets, err := newTargetSets(own, logger.With("component", "discovery"))
	if err != nil {
		cancel()
		return nil, fmt.Errorf("discovery: %w", err)
	}
	var dm *discovery.Manager
	if len(others) > 0 {
		sdMetrics, err := discovery.CreateAndRegisterSDMetrics(reg)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("register discovery metrics: %w", err)
		}
		dm = discovery.NewManager(ctx, logger.With("component", "discovery"), reg, sdMetrics, discovery.Name("scrape"), discovery.Updatert(time.Second))
		if dm == nil {
			cancel()
			return nil, errors.New("create discovery manager")
		}
		if err := dm.ApplyConfig(others); err != nil {
			cancel()
			return nil, fmt.Errorf("apply discovery config: %w", err)
		}
	}
	rec, err := newRecorder(logger, reg)
	if err != nil {
		cancel()
		return nil, err
	}
	scrapeOpts := &promscrape.Options{
		DiscoveryReloadInterval: model.Duration(time.Second),
		// The appenders learn whose scrape they store (TargetFromContext):
		// a scale-out replica keeps only its local jobs in its TSDB.
		PassMetadataInContext: true,
	}
	podBytes, err := podBytesFor(scs, o.PodMaxBytesInFlight, o.dial, logger.With("component", "pod-scrape-bytes"), reg)
	switch {
	case err != nil:
		cancel()
		return nil, err
	case podBytes != nil:
		app = podBytes.wrap(app)
		scrapeOpts.HTTPClientOptions = []config_util.HTTPClientOption{config_util.WithDialContextFunc(podBytes.dialContext)}
	case o.dial != nil:
		scrapeOpts.HTTPClientOptions = []config_util.HTTPClientOption{config_util.WithDialContextFunc(config_util.DialContextFunc(o.dial))}
	}
	sm, err := promscrape.NewManager(scrapeOpts,
		slog.New(deferredAsDebug{logger.Handler()}).With("component", "scrape"), nil, nil, rec.wrap(app), reg)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("create scrape manager: %w", err)
	}
	m := &Manager{discovery: dm, sets: sets, scrape: sm, recorder: rec, ctx: ctx, cancel: cancel, intervals: intervals, nodes: inf.Nodes,
		inlined: cfg, files: files, contents: contents, logger: logger}
	rec.reason = m.lastError
	if err := sm.ApplyConfig(cfg); err != nil {
		cancel()
		return nil, fmt.Errorf("apply scrape config: %w", err)
	}
	return m, nil
}

// discoveryConfigs is each job's discovery, the built-in jobs' from the
// shared informers, and each job's scrape interval.
func discoveryConfigs(scs []*config.ScrapeConfig, inf Informers) (map[string]discovery.Configs, map[string]time.Duration) {
	sdCfgs := map[string]discovery.Configs{}
	intervals := map[string]time.Duration{}
	for _, sc := range scs {
		sdCfgs[sc.JobName] = sc.ServiceDiscoveryConfigs
		var shared discovery.Configs
		ok := false
		switch sc.JobName {
		case PodJobName:
			shared, ok = podDiscoveryFor(sc.ServiceDiscoveryConfigs, inf.Pods, podJobKeeps)
		case KubeletJobName:
			shared, ok = nodeDiscoveryFor(sc.ServiceDiscoveryConfigs, inf.Nodes)
		case CadvisorJobName:
			if inf.Cadvisor {
				shared, ok = nodeDiscoveryFor(sc.ServiceDiscoveryConfigs, inf.Nodes)
			}
		}
		if ok {
			sdCfgs[sc.JobName] = shared
		}
		intervals[sc.JobName] = time.Duration(sc.ScrapeInterval)
	}
	return sdCfgs, intervals
}

// Run discovers and scrapes until ctx is done, then stops both managers.
func (m *Manager) Run(ctx context.Context) error {
	errc := make(chan error, 2)
	var upstream <-chan map[string][]*targetgroup.Group
	if m.discovery != nil {
		go func() { errc <- m.discovery.Run() }()
		upstream = m.discovery.SyncCh()
	}
	go m.sets.run(m.ctx, upstream)
	go func() { errc <- m.scrape.Run(m.sets.out) }()
	go m.recorder.run(m.ctx)
	go watchFiles(m.ctx, fileReloadInterval, m.inlined, m.files, m.contents, m.scrape.ApplyConfig, m.logger)
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			m.Stop()
			return fmt.Errorf("scrape manager stopped: %w", err)
		}
	}
	m.Stop()
	return nil
}

// Stop stops scraping and discovery. Safe to call more than once.
func (m *Manager) Stop() {
	m.stopOnce.Do(func() {
		m.scrape.Stop()
		m.cancel()
	})
}

// CheckStorageWrites fails while the last commit of scraped samples failed
// (a full disk, a failing write-ahead log): scrapes are read and lost.
func (m *Manager) CheckStorageWrites() error { return m.recorder.checkCommits() }

// CheckRatesReady fails, until it first passes, while job has no target
// discovered yet, or a target not scraped yet, or one that answers with
// fewer than two stored scrapes: a replica that just started can then
// answer every node with cpu, as its peers do (it was ready in a second,
// before discovery had handed it a node). Once
// passed it stays passed: a node coming back later is not a reason to take
// the whole replica out of service.
func (m *Manager) CheckRatesReady(job string) error {
	if m.ratesReady.Load() {
		return nil
	}
	active := m.scrape.TargetsActive()[job]
	if len(active) == 0 {
		if m.nodes == nil || len(m.nodes.GetStore().ListKeys()) == 0 {
			return nil // nothing to wait for, not latched: nodes may come
		}
		// Discovery has not handed over the nodes yet: a replica that
		// reported ready now would answer without a node's cpu.
		return fmt.Errorf("job %s: %d nodes known, no target discovered yet", job, len(m.nodes.GetStore().ListKeys()))
	}
	instances := make([]string, 0, len(active))
	for _, t := range active {
		instances = append(instances, t.GetValue(model.InstanceLabel))
	}
	if err := m.recorder.ratesReady(job, instances); err != nil {
		return err
	}
	m.ratesReady.Store(true)
	return nil
}

// CheckFresh fails when job has active targets and none of them finished a
// scrape within 1.5 intervals: the gateway's answers are going stale.
func (m *Manager) CheckFresh(job string) error {
	interval, ok := m.intervals[job]
	if !ok {
		return fmt.Errorf("no scrape job %q", job)
	}
	targets := m.scrape.TargetsActive()[job]
	if len(targets) == 0 {
		return nil
	}
	var newest time.Time
	for _, t := range targets {
		if ls := t.LastScrape(); ls.After(newest) {
			newest = ls
		}
	}
	if age := time.Since(newest); age > interval*3/2 {
		if newest.IsZero() {
			return fmt.Errorf("job %s: no scrape finished yet", job)
		}
		return fmt.Errorf("job %s: last scrape finished %v ago, interval %v", job, age.Round(time.Second), interval)
	}
	return nil
}

func (m *Manager) lastError(job, instance string) error {
	b := labels.NewBuilder(labels.EmptyLabels())
	for _, t := range m.scrape.TargetsActive()[job] {
		if t.Labels(b).Get(model.InstanceLabel) == instance {
			return t.LastError()
		}
	}
	return nil
}

// Targets is the Prometheus scrape manager, for the query API's targets,
// scrape pools and metadata endpoints. Callers only read from it; Manager
// alone applies configuration and stops it.
func (m *Manager) Targets() *promscrape.Manager { return m.scrape }
