package autoscaling

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
)

// Family names, as kube-state-metrics v2 exports them.
const (
	Info               = "kube_horizontalpodautoscaler_info"
	MinReplicas        = "kube_horizontalpodautoscaler_spec_min_replicas"
	MaxReplicas        = "kube_horizontalpodautoscaler_spec_max_replicas"
	CurrentReplicas    = "kube_horizontalpodautoscaler_status_current_replicas"
	DesiredReplicas    = "kube_horizontalpodautoscaler_status_desired_replicas"
	TargetMetric       = "kube_horizontalpodautoscaler_spec_target_metric"
	CurrentMetric      = "kube_horizontalpodautoscaler_status_target_metric"
	Condition          = "kube_horizontalpodautoscaler_status_condition"
	familyPrefix       = "kube_horizontalpodautoscaler_"
	labelNamespace     = "namespace"
	labelHPA           = "horizontalpodautoscaler"
	labelMetricName    = "metric_name"
	labelMetricTarget  = "metric_target_type"
	labelConditionType = "condition"
	labelStatus        = "status"
)

// Families are the names the collector exports, for the self job's filter.
var Families = []string{Info, MinReplicas, MaxReplicas, CurrentReplicas, DesiredReplicas, TargetMetric, CurrentMetric, Condition}

var (
	hpaLabels    = []string{labelNamespace, labelHPA}
	infoDesc     = prometheus.NewDesc(Info, "Information about this autoscaler.", append(hpaLabels, "scaletargetref_api_version", "scaletargetref_kind", "scaletargetref_name"), nil)
	minDesc      = prometheus.NewDesc(MinReplicas, "Lower limit for the number of pods that can be set by the autoscaler, default 1.", hpaLabels, nil)
	maxDesc      = prometheus.NewDesc(MaxReplicas, "Upper limit for the number of pods that can be set by the autoscaler; cannot be smaller than MinReplicas.", hpaLabels, nil)
	currentDesc  = prometheus.NewDesc(CurrentReplicas, "Current number of replicas of pods managed by this autoscaler.", hpaLabels, nil)
	desiredDesc  = prometheus.NewDesc(DesiredReplicas, "Desired number of replicas of pods managed by this autoscaler.", hpaLabels, nil)
	targetDesc   = prometheus.NewDesc(TargetMetric, "The metric specifications used by this autoscaler when calculating the desired replica count.", append(hpaLabels, labelMetricName, labelMetricTarget), nil)
	statusDesc   = prometheus.NewDesc(CurrentMetric, "The current metric status used by this autoscaler when calculating the desired replica count.", append(hpaLabels, labelMetricName, labelMetricTarget), nil)
	conditionDsc = prometheus.NewDesc(Condition, "The condition of this autoscaler.", append(hpaLabels, labelConditionType, labelStatus), nil)
)

// Collector exports the HPAs a lister holds; an empty or unsynced lister
// exports nothing.
type Collector struct {
	HPAs autoscalinglisters.HorizontalPodAutoscalerLister
}

var _ prometheus.Collector = Collector{}

// Describe sends every family's description.
func (Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{infoDesc, minDesc, maxDesc, currentDesc, desiredDesc, targetDesc, statusDesc, conditionDsc} {
		ch <- d
	}
}

// Collect sends every HPA's series.
func (c Collector) Collect(ch chan<- prometheus.Metric) {
	hpas, err := c.HPAs.List(labels.Everything())
	if err != nil {
		return
	}
	for _, h := range hpas {
		collectHPA(ch, h)
	}
}

func collectHPA(ch chan<- prometheus.Metric, h *autoscalingv2.HorizontalPodAutoscaler) {
	gauge := func(d *prometheus.Desc, v float64, extra ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append([]string{h.Namespace, h.Name}, extra...)...)
	}
	ref := h.Spec.ScaleTargetRef
	gauge(infoDesc, 1, ref.APIVersion, ref.Kind, ref.Name)
	minReplicas := int32(1)
	if h.Spec.MinReplicas != nil {
		minReplicas = *h.Spec.MinReplicas
	}
	gauge(minDesc, float64(minReplicas))
	gauge(maxDesc, float64(h.Spec.MaxReplicas))
	gauge(currentDesc, float64(h.Status.CurrentReplicas))
	gauge(desiredDesc, float64(h.Status.DesiredReplicas))
	for _, m := range h.Spec.Metrics {
		name, target := specTarget(m)
		for kind, v := range values(target.Value, target.AverageValue, target.AverageUtilization) {
			gauge(targetDesc, v, name, kind)
		}
	}
	for _, m := range h.Status.CurrentMetrics {
		name, current := statusValue(m)
		for kind, v := range values(current.Value, current.AverageValue, current.AverageUtilization) {
			gauge(statusDesc, v, name, kind)
		}
	}
	for _, cond := range h.Status.Conditions {
		for _, s := range []corev1.ConditionStatus{corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown} {
			v := 0.0
			if cond.Status == s {
				v = 1
			}
			gauge(conditionDsc, v, string(cond.Type), strings.ToLower(string(s)))
		}
	}
}

// MetricName is a metric's name: the resource's for Resource and
// ContainerResource, as kube-state-metrics' metric_name label.
func MetricName(m autoscalingv2.MetricSpec) string {
	name, _ := specTarget(m)
	return name
}

// TargetKind is the metric_target_type of a metric's target:
// utilization, average or value.
func TargetKind(m autoscalingv2.MetricSpec) string {
	_, t := specTarget(m)
	switch t.Type {
	case autoscalingv2.UtilizationMetricType:
		return "utilization"
	case autoscalingv2.AverageValueMetricType:
		return "average"
	}
	return "value"
}

// specTarget is a metric's name (the resource's for Resource and
// ContainerResource) and target.
func specTarget(m autoscalingv2.MetricSpec) (string, autoscalingv2.MetricTarget) {
	switch {
	case m.Resource != nil:
		return string(m.Resource.Name), m.Resource.Target
	case m.ContainerResource != nil:
		return string(m.ContainerResource.Name), m.ContainerResource.Target
	case m.Pods != nil:
		return m.Pods.Metric.Name, m.Pods.Target
	case m.Object != nil:
		return m.Object.Metric.Name, m.Object.Target
	case m.External != nil:
		return m.External.Metric.Name, m.External.Target
	}
	return "", autoscalingv2.MetricTarget{}
}

// statusValue is a current metric's name and value, as specTarget.
func statusValue(m autoscalingv2.MetricStatus) (string, autoscalingv2.MetricValueStatus) {
	switch {
	case m.Resource != nil:
		return string(m.Resource.Name), m.Resource.Current
	case m.ContainerResource != nil:
		return string(m.ContainerResource.Name), m.ContainerResource.Current
	case m.Pods != nil:
		return m.Pods.Metric.Name, m.Pods.Current
	case m.Object != nil:
		return m.Object.Metric.Name, m.Object.Current
	case m.External != nil:
		return m.External.Metric.Name, m.External.Current
	}
	return "", autoscalingv2.MetricValueStatus{}
}

// values are a target's or current value's set fields by
// kube-state-metrics' metric_target_type: value, average (AverageValue) or
// utilization (AverageUtilization, percent).
func values(value, average *resource.Quantity, utilization *int32) map[string]float64 {
	out := map[string]float64{}
	if value != nil {
		out["value"] = value.AsApproximateFloat64()
	}
	if average != nil {
		out["average"] = average.AsApproximateFloat64()
	}
	if utilization != nil {
		out["utilization"] = float64(*utilization)
	}
	return out
}
