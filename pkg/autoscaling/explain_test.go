package autoscaling

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
)

// fakeReader serves one HPA, its scale and pods, and fixed metric values.
type fakeReader struct {
	hpa      *autoscalingv2.HorizontalPodAutoscaler
	scale    ScaleInfo
	pods     []*corev1.Pod
	cpu      map[string]Sample
	perPod   map[string]Sample
	external int64
	failPods bool
}

func (f fakeReader) HPA(context.Context, string, string) (*autoscalingv2.HorizontalPodAutoscaler, error) {
	return f.hpa, nil
}
func (f fakeReader) Scale(context.Context, string, autoscalingv2.CrossVersionObjectReference) (ScaleInfo, error) {
	return f.scale, nil
}
func (f fakeReader) Pods(context.Context, string, labels.Selector) ([]*corev1.Pod, error) {
	return f.pods, nil
}
func (f fakeReader) ResourceMetric(context.Context, string, labels.Selector, corev1.ResourceName, string) (map[string]Sample, error) {
	return f.cpu, nil
}
func (f fakeReader) PodsMetric(context.Context, string, labels.Selector, autoscalingv2.MetricIdentifier) (map[string]Sample, error) {
	if f.failPods {
		return nil, errors.New("the server could not find the metric http_requests for pods")
	}
	return f.perPod, nil
}
func (f fakeReader) ObjectMetric(context.Context, string, autoscalingv2.CrossVersionObjectReference, autoscalingv2.MetricIdentifier) (int64, error) {
	return 0, errors.New("no object metrics here")
}
func (f fakeReader) ExternalMetric(context.Context, string, autoscalingv2.MetricIdentifier) (int64, error) {
	return f.external, nil
}

func webHPA(metrics ...autoscalingv2.MetricSpec) *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MinReplicas:    ptr.To[int32](2), MaxReplicas: 4, Metrics: metrics,
		},
	}
}

var (
	cpu50 = autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
		Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](50)}}}
	requests10 = autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "http_requests"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(resource.MustParse("10"))}}}
)

func threePods(values ...int64) ([]*corev1.Pod, map[string]Sample) {
	pods, samples := replayCase{current: 3, levels: values}.build(time.Now())
	return pods, samples
}

// TestExplain: the verdict names the decision and its reason first, the
// highest metric wins, maxReplicas caps, a failed metric holds a
// scale-down, and a recent higher recommendation holds a scale-down.
func TestExplain(t *testing.T) {
	now := time.Now()
	o := Options{Tolerance: DefaultTolerance, Timing: DefaultTiming(now), DownscaleStabilization: DefaultDownscaleStabilization}
	pods, cpu := threePods(800, 800, 800)
	_, quiet := threePods(10500, 10500, 10500)
	for _, c := range []struct {
		name        string
		r           fakeReader
		o           Options
		want        int32
		winner      string
		verdict     string
		limitReason string
	}{
		{"cpu at 160% of its target, capped at maxReplicas", fakeReader{hpa: webHPA(cpu50, requests10), scale: ScaleInfo{Replicas: 3, StatusReplicas: 3, Selector: "app=web"}, pods: pods, cpu: cpu, perPod: quiet}, o,
			4, "cpu", "scale from 3 to 4: cpu: usage ratio 1.600 × 3 pods with values = 5; capped at maxReplicas 4", "TooManyReplicas"},
		{"within tolerance", fakeReader{hpa: webHPA(requests10), scale: ScaleInfo{Replicas: 3, Selector: "app=web"}, pods: pods, perPod: quiet}, o,
			3, "http_requests", "held at 3: http_requests: usage ratio 1.050 is within the tolerance", "DesiredWithinRange"},
		{"a failed metric holds a scale-down", fakeReader{hpa: webHPA(cpu50, requests10), scale: ScaleInfo{Replicas: 3, Selector: "app=web"}, pods: pods, cpu: map[string]Sample{"pod-0": {Value: 100}, "pod-1": {Value: 100}, "pod-2": {Value: 100}}, failPods: true}, o,
			3, "cpu", "held at 3: 1 of 2 metrics could not be read (http_requests: the server could not find", "FailedGetMetrics"},
		{"a recent higher recommendation holds a scale-down", fakeReader{hpa: webHPA(cpu50), scale: ScaleInfo{Replicas: 3, Selector: "app=web"}, pods: pods, cpu: map[string]Sample{"pod-0": {Value: 100}, "pod-1": {Value: 100}, "pod-2": {Value: 100}}},
			Options{Tolerance: DefaultTolerance, Timing: DefaultTiming(now), DownscaleStabilization: DefaultDownscaleStabilization, History: []Recommendation{{At: now.Add(-time.Minute), Replicas: 3}}, Reconstructed: true},
			3, "cpu", "held at 3: cpu: usage ratio 0.200 × 3 pods with values = 1; scale-down stabilization: the highest recommendation of the last 5m0s was 3", "DesiredWithinRange"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, err := Explain(context.Background(), c.r, "shop", "web", c.o)
			if err != nil {
				t.Fatal(err)
			}
			if e.Desired != c.want || e.Winner != c.winner || !strings.HasPrefix(e.Verdict, c.verdict) || e.LimitReason != c.limitReason {
				t.Errorf("desired %d by %q (%s): %q\nwant %d by %q (%s): %q", e.Desired, e.Winner, e.LimitReason, e.Verdict, c.want, c.winner, c.limitReason, c.verdict)
			}
		})
	}
}

// TestExplainWithoutBehavior: with no spec.behavior the controller scales
// 1 → 4 on a queue that wants 5 (twice the replicas, or 4, at a time), as
// the e2e suite saw it do; with a behavior, even an empty one, its default
// policies allow 4 pods per 15 s, so 5.
func TestExplainWithoutBehavior(t *testing.T) {
	queue := autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(resource.MustParse("5"))}}}
	hpa := webHPA(queue)
	hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas = ptr.To[int32](1), 10
	o := Options{Tolerance: DefaultTolerance, Timing: DefaultTiming(time.Now()), DownscaleStabilization: DefaultDownscaleStabilization}
	r := fakeReader{hpa: hpa, scale: ScaleInfo{Replicas: 1, StatusReplicas: 1, Selector: "app=web"}, external: 22000}
	e, err := Explain(context.Background(), r, "shop", "web", o)
	if want := "scale from 1 to 4: queue_depth: total 22000m ÷ 5000m per pod = 5; without a behavior, a scale-up goes at most to twice the replicas or 4, so 4 now"; err != nil || e.Verdict != want || e.LimitReason != "ScaleUpLimit" {
		t.Errorf("without a behavior: %q (%s) %v\nwant %q (ScaleUpLimit)", e.Verdict, e.LimitReason, err, want)
	}
	withBehavior := hpa.DeepCopy()
	withBehavior.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{}
	r.hpa = withBehavior
	e, err = Explain(context.Background(), r, "shop", "web", o)
	if want := "scale from 1 to 5: queue_depth: total 22000m ÷ 5000m per pod = 5"; err != nil || e.Verdict != want || e.LimitReason != "DesiredWithinRange" {
		t.Errorf("with an empty behavior: %q (%s) %v\nwant %q (DesiredWithinRange)", e.Verdict, e.LimitReason, err, want)
	}
}

// TestExplainBeforeMetrics: a target outside minReplicas..maxReplicas, or
// at 0, is decided before any metric is read.
func TestExplainBeforeMetrics(t *testing.T) {
	o := Options{Tolerance: DefaultTolerance, Timing: DefaultTiming(time.Now())}
	for replicas, want := range map[int32]string{0: "scaling is disabled", 1: "scale from 1 to 2", 9: "scale from 9 to 4"} {
		e, err := Explain(context.Background(), fakeReader{hpa: webHPA(cpu50), scale: ScaleInfo{Replicas: replicas}}, "shop", "web", o)
		if err != nil || !strings.HasPrefix(e.Verdict, want) {
			t.Errorf("%d replicas: %q %v, want %q", replicas, e.Verdict, err, want)
		}
	}
}

// TestExplainMalformedMetrics: a metric whose type names a field it lacks
// is an error of that metric, not a panic.
func TestExplainMalformedMetrics(t *testing.T) {
	pods, cpu := threePods(500, 500, 500)
	for _, typ := range []autoscalingv2.MetricSourceType{autoscalingv2.ResourceMetricSourceType, autoscalingv2.PodsMetricSourceType, autoscalingv2.ObjectMetricSourceType, autoscalingv2.ExternalMetricSourceType, "Bogus"} {
		r := fakeReader{hpa: webHPA(cpu50, autoscalingv2.MetricSpec{Type: typ}), scale: ScaleInfo{Replicas: 3, Selector: "app=web"}, pods: pods, cpu: cpu}
		e, err := Explain(context.Background(), r, "shop", "web", Options{Tolerance: DefaultTolerance, Timing: DefaultTiming(time.Now())})
		if err != nil || len(e.Metrics) != 2 || e.Metrics[1].Error == "" {
			t.Errorf("%s without its field: %+v %v, want that metric's error", typ, e.Metrics, err)
		}
	}
}
