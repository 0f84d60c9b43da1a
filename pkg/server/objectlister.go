package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"

	"github.com/metrics-gateway/metrics-gateway/pkg/custom"
)

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
