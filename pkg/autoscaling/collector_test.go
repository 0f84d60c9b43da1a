package autoscaling

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

func lister(t *testing.T, hpas ...*autoscalingv2.HorizontalPodAutoscaler) autoscalinglisters.HorizontalPodAutoscalerLister {
	t.Helper()
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, h := range hpas {
		if err := idx.Add(h); err != nil {
			t.Fatal(err)
		}
	}
	return autoscalinglisters.NewHorizontalPodAutoscalerLister(idx)
}

// TestCollector: an HPA on cpu utilization and a Pods metric, scaling from
// 2 to 3, exports kube-state-metrics' families with its values; an HPA
// without minReplicas reports the default 1.
func TestCollector(t *testing.T) {
	web := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    ptr.To[int32](2),
			MaxReplicas:    10,
			Metrics: []autoscalingv2.MetricSpec{
				{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
					Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](50)}}},
				{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
					Metric: autoscalingv2.MetricIdentifier{Name: "http_requests"},
					Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(resource.MustParse("10"))}}},
			},
		},
		Status: autoscalingv2.HorizontalPodAutoscalerStatus{
			CurrentReplicas: 2, DesiredReplicas: 3,
			CurrentMetrics: []autoscalingv2.MetricStatus{
				{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricStatus{
					Name: corev1.ResourceCPU, Current: autoscalingv2.MetricValueStatus{AverageUtilization: ptr.To[int32](35), AverageValue: ptr.To(resource.MustParse("35m"))}}},
				{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricStatus{
					Metric: autoscalingv2.MetricIdentifier{Name: "http_requests"}, Current: autoscalingv2.MetricValueStatus{AverageValue: ptr.To(resource.MustParse("12500m"))}}},
			},
			Conditions: []autoscalingv2.HorizontalPodAutoscalerCondition{{Type: autoscalingv2.AbleToScale, Status: corev1.ConditionTrue}},
		},
	}
	queue := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Namespace: "jobs", Name: "workers"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "workers"},
			MaxReplicas:    5,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
				Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth"}, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.ValueMetricType, Value: ptr.To(resource.MustParse("20"))}}}},
		},
	}
	want := `
# HELP kube_horizontalpodautoscaler_info Information about this autoscaler.
# TYPE kube_horizontalpodautoscaler_info gauge
kube_horizontalpodautoscaler_info{horizontalpodautoscaler="web",namespace="shop",scaletargetref_api_version="apps/v1",scaletargetref_kind="Deployment",scaletargetref_name="web"} 1
kube_horizontalpodautoscaler_info{horizontalpodautoscaler="workers",namespace="jobs",scaletargetref_api_version="apps/v1",scaletargetref_kind="Deployment",scaletargetref_name="workers"} 1
# HELP kube_horizontalpodautoscaler_spec_max_replicas Upper limit for the number of pods that can be set by the autoscaler; cannot be smaller than MinReplicas.
# TYPE kube_horizontalpodautoscaler_spec_max_replicas gauge
kube_horizontalpodautoscaler_spec_max_replicas{horizontalpodautoscaler="web",namespace="shop"} 10
kube_horizontalpodautoscaler_spec_max_replicas{horizontalpodautoscaler="workers",namespace="jobs"} 5
# HELP kube_horizontalpodautoscaler_spec_min_replicas Lower limit for the number of pods that can be set by the autoscaler, default 1.
# TYPE kube_horizontalpodautoscaler_spec_min_replicas gauge
kube_horizontalpodautoscaler_spec_min_replicas{horizontalpodautoscaler="web",namespace="shop"} 2
kube_horizontalpodautoscaler_spec_min_replicas{horizontalpodautoscaler="workers",namespace="jobs"} 1
# HELP kube_horizontalpodautoscaler_spec_target_metric The metric specifications used by this autoscaler when calculating the desired replica count.
# TYPE kube_horizontalpodautoscaler_spec_target_metric gauge
kube_horizontalpodautoscaler_spec_target_metric{horizontalpodautoscaler="web",metric_name="cpu",metric_target_type="utilization",namespace="shop"} 50
kube_horizontalpodautoscaler_spec_target_metric{horizontalpodautoscaler="web",metric_name="http_requests",metric_target_type="average",namespace="shop"} 10
kube_horizontalpodautoscaler_spec_target_metric{horizontalpodautoscaler="workers",metric_name="queue_depth",metric_target_type="value",namespace="jobs"} 20
# HELP kube_horizontalpodautoscaler_status_condition The condition of this autoscaler.
# TYPE kube_horizontalpodautoscaler_status_condition gauge
kube_horizontalpodautoscaler_status_condition{condition="AbleToScale",horizontalpodautoscaler="web",namespace="shop",status="false"} 0
kube_horizontalpodautoscaler_status_condition{condition="AbleToScale",horizontalpodautoscaler="web",namespace="shop",status="true"} 1
kube_horizontalpodautoscaler_status_condition{condition="AbleToScale",horizontalpodautoscaler="web",namespace="shop",status="unknown"} 0
# HELP kube_horizontalpodautoscaler_status_current_replicas Current number of replicas of pods managed by this autoscaler.
# TYPE kube_horizontalpodautoscaler_status_current_replicas gauge
kube_horizontalpodautoscaler_status_current_replicas{horizontalpodautoscaler="web",namespace="shop"} 2
kube_horizontalpodautoscaler_status_current_replicas{horizontalpodautoscaler="workers",namespace="jobs"} 0
# HELP kube_horizontalpodautoscaler_status_desired_replicas Desired number of replicas of pods managed by this autoscaler.
# TYPE kube_horizontalpodautoscaler_status_desired_replicas gauge
kube_horizontalpodautoscaler_status_desired_replicas{horizontalpodautoscaler="web",namespace="shop"} 3
kube_horizontalpodautoscaler_status_desired_replicas{horizontalpodautoscaler="workers",namespace="jobs"} 0
# HELP kube_horizontalpodautoscaler_status_target_metric The current metric status used by this autoscaler when calculating the desired replica count.
# TYPE kube_horizontalpodautoscaler_status_target_metric gauge
kube_horizontalpodautoscaler_status_target_metric{horizontalpodautoscaler="web",metric_name="cpu",metric_target_type="average",namespace="shop"} 0.035
kube_horizontalpodautoscaler_status_target_metric{horizontalpodautoscaler="web",metric_name="cpu",metric_target_type="utilization",namespace="shop"} 35
kube_horizontalpodautoscaler_status_target_metric{horizontalpodautoscaler="web",metric_name="http_requests",metric_target_type="average",namespace="shop"} 12.5
`
	if err := testutil.CollectAndCompare(Collector{HPAs: lister(t, web, queue)}, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(Collector{HPAs: lister(t)}); n != 0 {
		t.Errorf("no HPAs: %d series, want none", n)
	}
}
