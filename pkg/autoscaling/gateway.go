package autoscaling

import (
	"context"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	"k8s.io/client-go/tools/cache"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"
	"sigs.k8s.io/metrics-server/pkg/api"

	"github.com/metrics-gateway/metrics-gateway/pkg/pods"
)

// CustomAt evaluates the custom and external metrics APIs at a time, as
// they served it then; *custom.Provider is one.
type CustomAt interface {
	ObjectsAt(ctx context.Context, ts time.Time, namespace string, names []string, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValueList, error)
	ObjectAt(ctx context.Context, ts time.Time, name types.NamespacedName, info provider.CustomMetricInfo, metricSelector labels.Selector) (*custom_metrics.MetricValue, error)
	ExternalAt(ctx context.Context, ts time.Time, namespace string, metricSelector labels.Selector, metric string) (*external_metrics.ExternalMetricValueList, error)
}

// Targets reads scale targets as the HPA controller does.
type Targets interface {
	Scale(ctx context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference) (ScaleInfo, error)
	// ResourceOf maps a reference's kind to its resource.
	ResourceOf(ref autoscalingv2.CrossVersionObjectReference) (schema.GroupResource, error)
}

// Sources are what the gateway's own explanations read: its informers,
// the API server for scale targets, its storage for values and the
// recorded history.
type Sources struct {
	HPAs autoscalinglisters.HorizontalPodAutoscalerLister
	// PodLister is pods.Lister: the running pods the gateway watches.
	PodLister cache.GenericLister
	// Targets reads scale targets (live) and maps kinds to resources;
	// *APIReader is one.
	Targets Targets
	// Resource answers metrics.k8s.io as it did at a time.
	Resource func(at time.Time) api.PodMetricsGetter
	Custom   CustomAt
	History  *History
	// Now is the clock; nil is the wall clock.
	Now func() time.Time
}

// GatewayReader reads for one explanation of the HPA named Name at At:
// the scale target and pods live (informers, scale subresource), or as
// recorded then when Past (History); values are always the gateway's own,
// evaluated at At.
type GatewayReader struct {
	*Sources
	Name string
	At   time.Time
	Past bool
	// listed keeps the last listing: the replay lists the pods, then each
	// metric's read lists them again for their names.
	listed *listedPods
}

type listedPods struct {
	key  string
	pods []*corev1.Pod
}

var _ Reader = GatewayReader{}

// HPA is the informer's: an HPA's spec is not recorded, so a past
// explanation uses today's.
func (g GatewayReader) HPA(_ context.Context, namespace, name string) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	return g.HPAs.HorizontalPodAutoscalers(namespace).Get(name)
}

// Scale is live now; in the past, the recorded replicas with today's
// selector.
func (g GatewayReader) Scale(ctx context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference) (ScaleInfo, error) {
	s, err := g.Targets.Scale(ctx, namespace, ref)
	if err != nil || !g.Past {
		return s, err
	}
	n, err := g.History.TargetReplicas(ctx, namespace, g.Name, g.At)
	if err != nil {
		return s, err
	}
	s.Replicas, s.StatusReplicas = n, n
	return s, nil
}

// Pods are the informer's running pods now, or the recorded members then.
func (g GatewayReader) Pods(ctx context.Context, namespace string, selector labels.Selector) ([]*corev1.Pod, error) {
	key := namespace + "/" + selector.String()
	if g.listed != nil && g.listed.key == key {
		return g.listed.pods, nil
	}
	out, err := g.listPods(ctx, namespace, selector)
	if err == nil && g.listed != nil {
		*g.listed = listedPods{key: key, pods: out}
	}
	return out, err
}

func (g GatewayReader) listPods(ctx context.Context, namespace string, selector labels.Selector) ([]*corev1.Pod, error) {
	if g.Past {
		return g.History.Members(ctx, namespace, g.Name, g.At)
	}
	objs, err := g.PodLister.ByNamespace(namespace).List(selector)
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*pods.Pod); ok {
			out = append(out, corePod(p))
		}
	}
	return out, nil
}

// corePod is what the replay reads of a pod.
func corePod(p *pods.Pod) *corev1.Pod {
	out := &corev1.Pod{ObjectMeta: p.ObjectMeta, Status: corev1.PodStatus{Phase: p.Phase}}
	if !p.StartTime.IsZero() {
		st := p.StartTime
		out.Status.StartTime = &st
	}
	if p.Ready != "" {
		out.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: p.Ready, LastTransitionTime: p.ReadySince}}
	}
	for _, c := range p.Containers {
		if c.Init && !c.Sidecar {
			continue // the controller counts no other init container
		}
		ctr := corev1.Container{Name: c.Name, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{}}}
		if c.CPURequest >= 0 {
			ctr.Resources.Requests[corev1.ResourceCPU] = *resource.NewMilliQuantity(c.CPURequest, resource.DecimalSI)
		}
		if c.MemoryRequest >= 0 {
			ctr.Resources.Requests[corev1.ResourceMemory] = *resource.NewMilliQuantity(c.MemoryRequest, resource.BinarySI)
		}
		out.Spec.Containers = append(out.Spec.Containers, ctr)
	}
	return out
}

// ResourceMetric is metrics.k8s.io's answer at At for the selected pods.
func (g GatewayReader) ResourceMetric(ctx context.Context, namespace string, selector labels.Selector, res corev1.ResourceName, container string) (map[string]Sample, error) {
	ps, err := g.Pods(ctx, namespace, selector)
	if err != nil {
		return nil, err
	}
	metas := make([]*metav1.PartialObjectMetadata, len(ps))
	for i, p := range ps {
		metas[i] = &metav1.PartialObjectMetadata{ObjectMeta: p.ObjectMeta}
	}
	got, err := g.Resource(g.At).GetPodMetrics(metas...)
	if err != nil {
		return nil, fmt.Errorf("metrics.k8s.io: %w", err)
	}
	out := map[string]Sample{}
	for _, p := range got {
		var sum int64
		found := false
		for _, c := range p.Containers {
			if q, ok := c.Usage[res]; ok && (container == "" || c.Name == container) {
				sum += q.MilliValue()
				found = true
			}
		}
		if found {
			out[p.Name] = Sample{Value: sum, Timestamp: p.Timestamp.Time, Window: p.Window.Duration}
		}
	}
	return out, nil
}

// PodsMetric is custom.metrics.k8s.io's answer at At for the selected pods.
func (g GatewayReader) PodsMetric(ctx context.Context, namespace string, selector labels.Selector, metric autoscalingv2.MetricIdentifier) (map[string]Sample, error) {
	ms, err := metricSelector(metric)
	if err != nil {
		return nil, err
	}
	ps, err := g.Pods(ctx, namespace, selector)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	info := provider.CustomMetricInfo{GroupResource: schema.GroupResource{Resource: "pods"}, Namespaced: true, Metric: metric.Name}
	l, err := g.Custom.ObjectsAt(ctx, g.At, namespace, names, info, ms)
	if err != nil {
		return nil, fmt.Errorf("custom.metrics.k8s.io: %w", err)
	}
	out := map[string]Sample{}
	for _, v := range l.Items {
		out[v.DescribedObject.Name] = customSample(v)
	}
	return out, nil
}

func customSample(v custom_metrics.MetricValue) Sample {
	w := int64(0)
	if v.WindowSeconds != nil {
		w = *v.WindowSeconds
	}
	return Sample{Value: v.Value.MilliValue(), Timestamp: v.Timestamp.Time, Window: time.Duration(w) * time.Second}
}

// ObjectMetric is custom.metrics.k8s.io's answer at At for one object.
func (g GatewayReader) ObjectMetric(ctx context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference, metric autoscalingv2.MetricIdentifier) (int64, error) {
	ms, err := metricSelector(metric)
	if err != nil {
		return 0, err
	}
	gr, err := g.Targets.ResourceOf(ref)
	if err != nil {
		return 0, err
	}
	info := provider.CustomMetricInfo{GroupResource: gr, Namespaced: true, Metric: metric.Name}
	v, err := g.Custom.ObjectAt(ctx, g.At, types.NamespacedName{Namespace: namespace, Name: ref.Name}, info, ms)
	if err != nil {
		return 0, fmt.Errorf("custom.metrics.k8s.io: %w", err)
	}
	return v.Value.MilliValue(), nil
}

// ExternalMetric is external.metrics.k8s.io's sum at At.
func (g GatewayReader) ExternalMetric(ctx context.Context, namespace string, metric autoscalingv2.MetricIdentifier) (int64, error) {
	ms, err := metricSelector(metric)
	if err != nil {
		return 0, err
	}
	l, err := g.Custom.ExternalAt(ctx, g.At, namespace, ms, metric.Name)
	if err != nil {
		return 0, fmt.Errorf("external.metrics.k8s.io: %w", err)
	}
	var sum int64
	for _, v := range l.Items {
		sum += v.Value.MilliValue()
	}
	return sum, nil
}
