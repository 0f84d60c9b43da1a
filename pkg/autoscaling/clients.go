package autoscaling

import (
	"context"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/scale"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
	"k8s.io/metrics/pkg/client/custom_metrics"
	"k8s.io/metrics/pkg/client/external_metrics"
)

// APIReader reads through the API server with the clients the HPA
// controller uses: the scale subresource, metrics.k8s.io v1beta1, and the
// custom and external metrics APIs.
type APIReader struct {
	kube     kubernetes.Interface
	mapper   *restmapper.DeferredDiscoveryRESTMapper
	scales   scale.ScalesGetter
	resource metricsclient.Interface
	custom   custom_metrics.CustomMetricsClient
	external external_metrics.ExternalMetricsClient
}

var _ Reader = (*APIReader)(nil)

// NewAPIReader makes the clients from cfg.
func NewAPIReader(cfg *rest.Config) (*APIReader, error) {
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	disco, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	cached := memory.NewMemCacheClient(disco)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(cached)
	scales, err := scale.NewForConfig(cfg, mapper, dynamic.LegacyAPIPathResolverFunc, scale.NewDiscoveryScaleKindResolver(cached))
	if err != nil {
		return nil, err
	}
	resource, err := metricsclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	external, err := external_metrics.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	custom := custom_metrics.NewForConfig(cfg, mapper, custom_metrics.NewAvailableAPIsGetter(disco))
	return &APIReader{kube: kube, mapper: mapper, scales: scales, resource: resource, custom: custom, external: external}, nil
}

// HPA reads the HorizontalPodAutoscaler.
func (a *APIReader) HPA(ctx context.Context, namespace, name string) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	return a.kube.AutoscalingV2().HorizontalPodAutoscalers(namespace).Get(ctx, name, metav1.GetOptions{})
}

// Scale reads the target's scale subresource.
func (a *APIReader) Scale(ctx context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference) (ScaleInfo, error) {
	gr, err := a.ResourceOf(ref)
	if err != nil {
		return ScaleInfo{}, err
	}
	s, err := a.scales.Scales(namespace).Get(ctx, gr, ref.Name, metav1.GetOptions{})
	if err != nil {
		return ScaleInfo{}, err
	}
	return ScaleInfo{Replicas: s.Spec.Replicas, StatusReplicas: s.Status.Replicas, Selector: s.Status.Selector}, nil
}

// ResourceOf maps a reference's kind to its resource.
func (a *APIReader) ResourceOf(ref autoscalingv2.CrossVersionObjectReference) (schema.GroupResource, error) {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return schema.GroupResource{}, err
	}
	m, err := a.mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, gv.Version)
	if err != nil {
		return schema.GroupResource{}, err
	}
	return m.Resource.GroupResource(), nil
}

// Pods lists the selected pods.
func (a *APIReader) Pods(ctx context.Context, namespace string, selector labels.Selector) ([]*corev1.Pod, error) {
	l, err := a.kube.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Pod, len(l.Items))
	for i := range l.Items {
		out[i] = &l.Items[i]
	}
	return out, nil
}

// ResourceMetric sums each pod's containers' usage (or one container's),
// from metrics.k8s.io v1beta1 as the HPA controller reads it.
func (a *APIReader) ResourceMetric(ctx context.Context, namespace string, selector labels.Selector, resource corev1.ResourceName, container string) (map[string]Sample, error) {
	l, err := a.resource.MetricsV1beta1().PodMetricses(namespace).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
	if err != nil {
		return nil, fmt.Errorf("metrics.k8s.io: %w", err)
	}
	out := map[string]Sample{}
	for _, p := range l.Items {
		var sum int64
		found := false
		for _, c := range p.Containers {
			if container != "" && c.Name != container {
				continue
			}
			if q, ok := c.Usage[resource]; ok {
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

// PodsMetric reads a Pods metric from custom.metrics.k8s.io.
func (a *APIReader) PodsMetric(_ context.Context, namespace string, selector labels.Selector, metric autoscalingv2.MetricIdentifier) (map[string]Sample, error) {
	ms, err := metricSelector(metric)
	if err != nil {
		return nil, err
	}
	l, err := a.custom.NamespacedMetrics(namespace).GetForObjects(schema.GroupKind{Kind: "Pod"}, selector, metric.Name, ms)
	if err != nil {
		return nil, fmt.Errorf("custom.metrics.k8s.io: %w", err)
	}
	out := map[string]Sample{}
	for _, v := range l.Items {
		w := int64(0)
		if v.WindowSeconds != nil {
			w = *v.WindowSeconds
		}
		out[v.DescribedObject.Name] = Sample{Value: v.Value.MilliValue(), Timestamp: v.Timestamp.Time, Window: time.Duration(w) * time.Second}
	}
	return out, nil
}

// ObjectMetric reads an Object metric from custom.metrics.k8s.io.
func (a *APIReader) ObjectMetric(_ context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference, metric autoscalingv2.MetricIdentifier) (int64, error) {
	ms, err := metricSelector(metric)
	if err != nil {
		return 0, err
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return 0, err
	}
	v, err := a.custom.NamespacedMetrics(namespace).GetForObject(schema.GroupKind{Group: gv.Group, Kind: ref.Kind}, ref.Name, metric.Name, ms)
	if err != nil {
		return 0, fmt.Errorf("custom.metrics.k8s.io: %w", err)
	}
	return v.Value.MilliValue(), nil
}

// ExternalMetric sums the matching values of an External metric.
func (a *APIReader) ExternalMetric(_ context.Context, namespace string, metric autoscalingv2.MetricIdentifier) (int64, error) {
	ms, err := metricSelector(metric)
	if err != nil {
		return 0, err
	}
	l, err := a.external.NamespacedMetrics(namespace).List(metric.Name, ms)
	if err != nil {
		return 0, fmt.Errorf("external.metrics.k8s.io: %w", err)
	}
	var sum int64
	for _, v := range l.Items {
		sum += v.Value.MilliValue()
	}
	return sum, nil
}

func metricSelector(m autoscalingv2.MetricIdentifier) (labels.Selector, error) {
	if m.Selector == nil {
		return labels.Everything(), nil
	}
	return metav1.LabelSelectorAsSelector(m.Selector)
}
