package server

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/endpoints/handlers/responsewriters"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"

	"sigs.k8s.io/metrics-server/pkg/api"

	"github.com/metrics-gateway/metrics-gateway/pkg/custom"
	"github.com/metrics-gateway/metrics-gateway/pkg/resource"
	"github.com/metrics-gateway/metrics-gateway/pkg/rules"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

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

// defaultRateWindow is the zero-config rate window: four pod scrape
// intervals, the fewest samples Prometheus recommends for rate(), so a
// counter's rate follows load as quickly as it can be measured reliably.
func defaultRateWindow(podInterval time.Duration) time.Duration {
	return 4 * podInterval
}

// newRESTMapper returns a discovery-backed mapper. Discovery is cached and
// re-read when a resource is not found, so CRDs added later are picked up.
func newRESTMapper(c *rest.Config) (*restmapper.DeferredDiscoveryRESTMapper, error) {
	dc, err := discovery.NewDiscoveryClientForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("discovery client: %w", err)
	}
	return restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc)), nil
}

// objectLister resolves label selectors for the custom metrics API from
// informer caches, never with a LIST per request. Pods come from the
// gateway's running-pod informer (only running pods have metrics); any
// other resource gets a metadata informer the first time it is asked for,
// which then stays: their number is bounded by the resources the rules
// name, since the provider asks only for metrics it has discovered.
type objectLister struct {
	pods        cache.GenericLister
	podsSynced  cache.InformerSynced
	factory     metadatainformer.SharedInformerFactory
	mapper      meta.RESTMapper
	syncTimeout time.Duration

	mu   sync.Mutex
	stop <-chan struct{} // nil until start
}

var _ custom.ObjectLister = (*objectLister)(nil)

func newObjectLister(pods cache.GenericLister, podsSynced cache.InformerSynced, client metadata.Interface, mapper meta.RESTMapper) *objectLister {
	return &objectLister{
		pods:        pods,
		podsSynced:  podsSynced,
		factory:     metadatainformer.NewSharedInformerFactoryWithOptions(client, 0, metadatainformer.WithTransform(slim)),
		mapper:      mapper,
		syncTimeout: 10 * time.Second,
	}
}

// start lets informers created from now on run until stop is closed.
func (l *objectLister) start(stop <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stop = stop
	l.factory.Start(stop)
}

func (l *objectLister) shutdown() { l.factory.Shutdown() }

// ListNames implements custom.ObjectLister.
func (l *objectLister) ListNames(gr schema.GroupResource, namespace string, selector labels.Selector) ([]string, error) {
	lister, synced, namespaced, err := l.listerFor(gr)
	if err != nil {
		return nil, err
	}
	if !synced() {
		ctx, cancel := context.WithTimeout(context.Background(), l.syncTimeout)
		defer cancel()
		if !cache.WaitForCacheSync(ctx.Done(), synced) {
			return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("the cache of %s is not synced yet; can the gateway list and watch them?", gr))
		}
	}
	var objs []runtime.Object
	if namespaced && namespace != "" {
		objs, err = lister.ByNamespace(namespace).List(selector)
	} else {
		objs, err = lister.List(selector)
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", gr, err)
	}
	names := make([]string, 0, len(objs))
	for _, o := range objs {
		m, err := meta.Accessor(o)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", gr, err)
		}
		names = append(names, m.GetName())
	}
	return names, nil
}

func (l *objectLister) listerFor(gr schema.GroupResource) (cache.GenericLister, cache.InformerSynced, bool, error) {
	if gr == (schema.GroupResource{Resource: "pods"}) {
		return l.pods, l.podsSynced, true, nil
	}
	gvr, err := l.mapper.ResourceFor(gr.WithVersion(""))
	if err != nil {
		return nil, nil, false, apierrors.NewBadRequest(fmt.Sprintf("unknown resource %s: %v", gr, err))
	}
	gvk, err := l.mapper.KindFor(gvr)
	if err != nil {
		return nil, nil, false, apierrors.NewBadRequest(fmt.Sprintf("unknown resource %s: %v", gr, err))
	}
	mapping, err := l.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, nil, false, apierrors.NewBadRequest(fmt.Sprintf("unknown resource %s: %v", gr, err))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stop == nil {
		return nil, nil, false, apierrors.NewServiceUnavailable("the gateway is starting")
	}
	inf := l.factory.ForResource(gvr)
	l.factory.Start(l.stop) // starts only informers not yet running
	return inf.Lister(), inf.Informer().HasSynced, mapping.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

// addAggregatedDiscovery lists the custom and external groups in the
// aggregated /apis document. custom-metrics-apiserver registers them only
// in legacy discovery; once metrics.k8s.io makes the server answer /apis
// in aggregated form, kube-aggregator and client-go (the HPA controller
// included) read that form alone and would not see these groups. Their
// resources are the discovered metrics, which change every scrape, so the
// versions are listed without resources: clients read the metric list from
// the legacy per-version document, which stays dynamic.
func addAggregatedDiscovery(gs *genericapiserver.GenericAPIServer) {
	for _, gv := range []schema.GroupVersion{
		{Group: custom_metrics.GroupName, Version: "v1beta2"},
		{Group: custom_metrics.GroupName, Version: "v1beta1"},
		{Group: external_metrics.GroupName, Version: "v1beta1"},
	} {
		gs.AggregatedDiscoveryGroupManager.AddGroupVersion(gv.Group, apidiscoveryv2.APIVersionDiscovery{
			Version:   gv.Version,
			Freshness: apidiscoveryv2.DiscoveryFreshnessCurrent,
			Resources: []apidiscoveryv2.APIResourceDiscovery{},
		})
	}
}

// compileRules compiles the adapter rules, or the zero-config defaults,
// against the API server's resources.
func (c *Config) compileRules(mapper meta.RESTMapper) (*rules.Rules, error) {
	cfg := c.Adapter
	if cfg == nil {
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

// withSelectorValidation answers a malformed labelSelector or
// metricLabelSelector on the custom and external metrics APIs with a 400
// Status. custom-metrics-apiserver parses them itself and returns its
// parse error as a 500, which would tell clients the server failed when
// the request was wrong. The check runs inside the handler chain, after
// authentication and authorization, so it reveals nothing to strangers.
func withSelectorValidation(build func(http.Handler, *genericapiserver.Config) http.Handler) func(http.Handler, *genericapiserver.Config) http.Handler {
	if build == nil {
		build = genericapiserver.DefaultBuildHandlerChain
	}
	return func(api http.Handler, c *genericapiserver.Config) http.Handler {
		checked := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/apis/"+custom_metrics.GroupName+"/") || strings.HasPrefix(r.URL.Path, "/apis/"+external_metrics.GroupName+"/") {
				q := r.URL.Query()
				for _, param := range []string{"labelSelector", "metricLabelSelector"} {
					if _, err := labels.Parse(q.Get(param)); err != nil {
						status := apierrors.NewBadRequest(fmt.Sprintf("invalid %s %q: %v", param, q.Get(param), err))
						responsewriters.ErrorNegotiated(status, c.Serializer, schema.GroupVersion{}, w, r)
						return
					}
				}
			}
			api.ServeHTTP(w, r)
		})
		return build(checked, c)
	}
}
