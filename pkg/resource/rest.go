package resource

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metainternalversion "k8s.io/apimachinery/pkg/apis/meta/internalversion"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	genericapirequest "k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/apiserver/pkg/registry/generic"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"k8s.io/metrics/pkg/apis/metrics"
	"sigs.k8s.io/metrics-server/pkg/api"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// The REST storage below serves metrics.k8s.io as metrics-server v0.9.0's
// pkg/api does (same objects, selectors, NotFound rules, ordering, tables)
// with one difference: a failed read keeps its kind. metrics-server wraps
// every getter error with fmt.Errorf, and the apiserver turns any error that
// is not itself a Status into a 500, so a query deadline answered "500
// Internal Error" there. Here a deadline is 504 Timeout and a cancelled or
// not yet open storage 503, as on the custom and external metrics APIs.

// InstallOptions say what the metrics.k8s.io API group reads.
type InstallOptions struct {
	// Getter answers usage for the pods and nodes a request selects. Required.
	Getter api.MetricsGetter
	// Pods lists pod metadata (PartialObjectMetadata) by namespace. Required.
	Pods cache.GenericLister
	// Nodes lists nodes. Required.
	Nodes corelisters.NodeLister
	// NodeSelector is added to every node list (--node-selector).
	NodeSelector []labels.Requirement
	// Freshness, when set, observes the age in seconds of every usage
	// answered (metrics-server's metric_freshness_seconds).
	Freshness prometheus.Observer
	// Now tells the time for Freshness; nil is the wall clock.
	Now func() time.Time
}

// Versions are the versions of metrics.k8s.io served, preferred first: v1
// (GA in Kubernetes 1.37, which kubectl top prefers) and v1beta1 (which the
// HPA controller reads), both answered by the same storage and getter.
var Versions = []string{"v1", "v1beta1"}

// Install serves metrics.k8s.io v1 and v1beta1 on s.
func Install(s *genericapiserver.GenericAPIServer, o InstallOptions) error {
	if o.Now == nil {
		o.Now = time.Now
	}
	pods := &podStorage{groupResource: metrics.Resource("podmetrics"), o: o}
	nodes := &nodeStorage{groupResource: metrics.Resource("nodemetrics"), o: o}
	// metrics-server's api.Build installs every version of k8s.io/metrics
	// into its scheme (v1 preferred) but maps storage for v1beta1 only.
	info := api.Build(pods, nodes)
	for _, v := range Versions {
		info.VersionedResourcesStorageMap[v] = info.VersionedResourcesStorageMap["v1beta1"]
	}
	return s.InstallAPIGroup(&info)
}

// statusError gives a failed read the Status a client can act on. An error
// that already is a Status keeps it; storage reports a deadline or a
// cancellation as promql's kinds wherever it struck (errkind.go).
func statusError(what string, err error) error {
	var (
		status   apierrors.APIStatus
		timeout  promql.ErrQueryTimeout
		canceled promql.ErrQueryCanceled
	)
	switch {
	case errors.As(err, &status):
		return status.(error)
	case errors.As(err, &timeout):
		return apierrors.NewTimeoutError(fmt.Sprintf("%s: %v", what, err), 1)
	case errors.As(err, &canceled), errors.Is(err, storage.ErrNotReady):
		return apierrors.NewServiceUnavailable(fmt.Sprintf("%s: %v", what, err))
	}
	return apierrors.NewInternalError(fmt.Errorf("%s: %w", what, err))
}

func (o InstallOptions) observe(ts time.Time) {
	if o.Freshness != nil {
		o.Freshness.Observe(o.Now().Sub(ts).Seconds())
	}
}

type podStorage struct {
	groupResource schema.GroupResource
	o             InstallOptions
}

var (
	_ rest.KindProvider         = (*podStorage)(nil)
	_ rest.Storage              = (*podStorage)(nil)
	_ rest.Getter               = (*podStorage)(nil)
	_ rest.Lister               = (*podStorage)(nil)
	_ rest.TableConvertor       = (*podStorage)(nil)
	_ rest.Scoper               = (*podStorage)(nil)
	_ rest.SingularNameProvider = (*podStorage)(nil)
)

func (*podStorage) New() runtime.Object     { return &metrics.PodMetrics{} }
func (*podStorage) Destroy()                {}
func (*podStorage) Kind() string            { return "PodMetrics" }
func (*podStorage) NewList() runtime.Object { return &metrics.PodMetricsList{} }
func (*podStorage) NamespaceScoped() bool   { return true }
func (*podStorage) GetSingularName() string { return "" }
func (p *podStorage) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	return podTable(obj), nil
}

// List answers the pods of the request's namespace (all when empty) that
// match its label and field selectors and have usage, sorted by namespace
// and name.
func (p *podStorage) List(ctx context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	sel := labels.Everything()
	if options != nil && options.LabelSelector != nil {
		sel = options.LabelSelector
	}
	namespace := genericapirequest.NamespaceValue(ctx)
	objs, err := p.o.Pods.ByNamespace(namespace).List(sel)
	if err != nil {
		return &metrics.PodMetricsList{}, statusError("list pods", err)
	}
	pods := make([]*metav1.PartialObjectMetadata, 0, len(objs))
	var set fields.Set
	for _, obj := range objs {
		pod := obj.(*metav1.PartialObjectMetadata)
		if options != nil && options.FieldSelector != nil {
			set = generic.AddObjectMetaFieldsSet(clear2(set), &pod.ObjectMeta, true)
			if !options.FieldSelector.Matches(set) {
				continue
			}
		}
		pods = append(pods, pod)
	}
	ms, err := p.metrics(pods...)
	if err != nil {
		klog.ErrorS(err, "Failed reading pods metrics", "namespace", klog.KRef("", namespace))
		return &metrics.PodMetricsList{}, statusError("read pods metrics", err)
	}
	return &metrics.PodMetricsList{Items: ms}, nil
}

// Get answers one pod's usage, or NotFound when the pod is unknown or has
// none yet.
func (p *podStorage) Get(ctx context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	namespace := genericapirequest.NamespaceValue(ctx)
	obj, err := p.o.Pods.ByNamespace(namespace).Get(name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return &metrics.PodMetrics{}, err
		}
		return &metrics.PodMetrics{}, statusError("get pod", err)
	}
	if obj == nil {
		return &metrics.PodMetrics{}, apierrors.NewNotFound(corev1.Resource("pods"), namespace+"/"+name)
	}
	ms, err := p.metrics(obj.(*metav1.PartialObjectMetadata))
	if err != nil {
		klog.ErrorS(err, "Failed reading pod metrics", "pod", klog.KRef(namespace, name))
		return nil, statusError("read pod metrics", err)
	}
	if len(ms) == 0 {
		return nil, apierrors.NewNotFound(p.groupResource, namespace+"/"+name)
	}
	return &ms[0], nil
}

// metrics answers pods sorted by namespace and name. It sorts the pods, not
// the answers: swapping pointers costs a fraction of swapping answers of
// some hundred bytes each (10 ms of a 7,000-pod list, most of it write
// barriers while the GC runs), and the getters answer in the order asked.
// A getter that does not is sorted after it. pods is reordered.
func (p *podStorage) metrics(pods ...*metav1.PartialObjectMetadata) ([]metrics.PodMetrics, error) {
	slices.SortFunc(pods, func(a, b *metav1.PartialObjectMetadata) int { return byNamespaceName(&a.ObjectMeta, &b.ObjectMeta) })
	ms, err := p.o.Getter.GetPodMetrics(pods...)
	if err != nil {
		return nil, err
	}
	for i := range ms {
		p.o.observe(ms[i].Timestamp.Time)
	}
	byName := func(a, b metrics.PodMetrics) int { return byNamespaceName(&a.ObjectMeta, &b.ObjectMeta) }
	if !slices.IsSortedFunc(ms, byName) {
		slices.SortFunc(ms, byName)
	}
	return ms, nil
}

type nodeStorage struct {
	groupResource schema.GroupResource
	o             InstallOptions
}

var (
	_ rest.KindProvider         = (*nodeStorage)(nil)
	_ rest.Storage              = (*nodeStorage)(nil)
	_ rest.Getter               = (*nodeStorage)(nil)
	_ rest.Lister               = (*nodeStorage)(nil)
	_ rest.TableConvertor       = (*nodeStorage)(nil)
	_ rest.Scoper               = (*nodeStorage)(nil)
	_ rest.SingularNameProvider = (*nodeStorage)(nil)
)

func (*nodeStorage) New() runtime.Object     { return &metrics.NodeMetrics{} }
func (*nodeStorage) Destroy()                {}
func (*nodeStorage) Kind() string            { return "NodeMetrics" }
func (*nodeStorage) NewList() runtime.Object { return &metrics.NodeMetricsList{} }
func (*nodeStorage) NamespaceScoped() bool   { return false }
func (*nodeStorage) GetSingularName() string { return "" }
func (n *nodeStorage) ConvertToTable(_ context.Context, obj runtime.Object, _ runtime.Object) (*metav1.Table, error) {
	return nodeTable(obj), nil
}

// List answers the nodes matching the request's selectors and
// --node-selector that have usage, sorted by name. (metrics-server answers
// in the lister's order, which is a map's: it changes from call to call.)
func (n *nodeStorage) List(_ context.Context, options *metainternalversion.ListOptions) (runtime.Object, error) {
	sel := labels.Everything()
	if options != nil && options.LabelSelector != nil {
		sel = options.LabelSelector
	}
	if n.o.NodeSelector != nil {
		sel = sel.Add(n.o.NodeSelector...)
	}
	all, err := n.o.Nodes.List(sel)
	if err != nil {
		return &metrics.NodeMetricsList{}, statusError("list nodes", err)
	}
	nodes := all
	if options != nil && options.FieldSelector != nil {
		nodes = make([]*corev1.Node, 0, len(all))
		var set fields.Set
		for _, node := range all {
			set = generic.AddObjectMetaFieldsSet(clear2(set), &node.ObjectMeta, false)
			if options.FieldSelector.Matches(set) {
				nodes = append(nodes, node)
			}
		}
	}
	ms, err := n.metrics(nodes...)
	if err != nil {
		klog.ErrorS(err, "Failed reading nodes metrics")
		return &metrics.NodeMetricsList{}, statusError("read nodes metrics", err)
	}
	return &metrics.NodeMetricsList{Items: ms}, nil
}

// Get answers one node's usage, or NotFound when the node is unknown or has
// none yet. --node-selector does not apply, as in metrics-server.
func (n *nodeStorage) Get(_ context.Context, name string, _ *metav1.GetOptions) (runtime.Object, error) {
	node, err := n.o.Nodes.Get(name)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, err
		}
		return nil, statusError("get node", err)
	}
	if node == nil {
		return nil, apierrors.NewNotFound(n.groupResource, name)
	}
	ms, err := n.metrics(node)
	if err != nil {
		klog.ErrorS(err, "Failed reading node metrics", "node", klog.KRef("", name))
		return nil, statusError("read node metrics", err)
	}
	if len(ms) == 0 {
		return nil, apierrors.NewNotFound(n.groupResource, name)
	}
	return &ms[0], nil
}

// metrics answers nodes sorted by name, sorting the nodes as
// podStorage.metrics sorts pods. nodes is reordered.
func (n *nodeStorage) metrics(nodes ...*corev1.Node) ([]metrics.NodeMetrics, error) {
	slices.SortFunc(nodes, func(a, b *corev1.Node) int { return strings.Compare(a.Name, b.Name) })
	ms, err := n.o.Getter.GetNodeMetrics(nodes...)
	if err != nil {
		return nil, err
	}
	for i := range ms {
		n.o.observe(ms[i].Timestamp.Time)
	}
	byName := func(a, b metrics.NodeMetrics) int { return strings.Compare(a.Name, b.Name) }
	if !slices.IsSortedFunc(ms, byName) {
		slices.SortFunc(ms, byName)
	}
	return ms, nil
}

// clear2 empties a reused field set (AddObjectMetaFieldsSet sets at most two).
func clear2(s fields.Set) fields.Set {
	if s == nil {
		return make(fields.Set, 2)
	}
	clear(s)
	return s
}

// byNamespaceName orders objects as the lists answer them.
func byNamespaceName(a, b *metav1.ObjectMeta) int {
	return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
}
