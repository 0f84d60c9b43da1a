package e2e

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// testHPAScalesOnCPU: an autoscaling/v2 HPA (cpu Utilization 50%) over a
// Deployment whose pods burn cpu per request. Load spread over the pods
// raises usage, the HPA controller reads it through the aggregator from
// the gateway, and scales to what the HPA formula predicts; without load it
// scales back to its minimum.
func testHPAScalesOnCPU(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	const (
		rps        = 160
		base       = 0.005 // cores per pod at rest
		perRequest = 0.001 // cores per request/s
		request    = 0.1   // cores requested per pod
		target     = 0.5   // utilization
	)
	d := deployment{ns: "e2e-hpa", name: "podinfo", replicas: 2, containers: []string{"app"}, cpuRequest: "100m", cpuBase: base, cpuPerRequest: perRequest, memory: 64 << 20}
	d.create(ctx, t)
	hpa := &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: d.name, Namespace: d.ns},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: d.name},
			MinReplicas:    ptr.To[int32](2),
			MaxReplicas:    10,
			Metrics: []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](50)},
			}}},
		},
	}
	if _, err := e.Client.AutoscalingV2().HorizontalPodAutoscalers(d.ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// At rest the HPA sees 5% and holds its minimum: this also proves it reads metrics.
	eventually(t, 2*time.Minute, "HPA reads cpu utilization", func() error {
		h, err := e.Client.AutoscalingV2().HorizontalPodAutoscalers(d.ns).Get(ctx, d.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if len(h.Status.CurrentMetrics) == 0 || h.Status.CurrentMetrics[0].Resource == nil || h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization == nil {
			return fmt.Errorf("no current cpu utilization yet: %+v", h.Status.Conditions)
		}
		return nil
	})

	// The load is chosen so that the HPA's answer is robust to measurement
	// noise: from 2 replicas the ratio is 1.7 (→ 4), at 4 it is 0.9, inside
	// the 10% tolerance and far from both edges.
	want := int32(predictReplicas(2, 10, base, perRequest, rps, request, target))
	t.Logf("load %d req/s: the HPA formula predicts %d replicas", rps, want)
	loadCtx, stopLoad := context.WithCancel(ctx)
	loadDone := make(chan int64, 1)
	go func() {
		n, _ := e.Load(loadCtx, d.ns, "app="+d.name, rps)
		loadDone <- n
	}()
	start := time.Now()
	eventually(t, 4*time.Minute, fmt.Sprintf("scale 2 → %d", want), func() error { return replicas(ctx, d, want) })
	t.Logf("scaled up to %d in %v", want, time.Since(start).Round(time.Second))
	// And stays there: no overshoot over the next HPA periods.
	for i := 0; i < 4; i++ {
		time.Sleep(5 * time.Second)
		if err := replicas(ctx, d, want); err != nil {
			t.Fatalf("after reaching %d: %v", want, err)
		}
	}
	stopLoad()
	t.Logf("load generator sent %d requests", <-loadDone)
	start = time.Now()
	eventually(t, 4*time.Minute, "scale back to 2", func() error { return replicas(ctx, d, 2) })
	t.Logf("scaled down to 2 in %v", time.Since(start).Round(time.Second))
}

func replicas(ctx context.Context, d deployment, want int32) error {
	dep, err := e.Client.AppsV1().Deployments(d.ns).Get(ctx, d.name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if got := ptr.Deref(dep.Spec.Replicas, 0); got != want {
		h, _ := e.Client.AutoscalingV2().HorizontalPodAutoscalers(d.ns).Get(ctx, d.name, metav1.GetOptions{})
		var util string
		if h != nil && len(h.Status.CurrentMetrics) > 0 && h.Status.CurrentMetrics[0].Resource != nil && h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization != nil {
			util = fmt.Sprintf("%d%%", *h.Status.CurrentMetrics[0].Resource.Current.AverageUtilization)
		}
		return fmt.Errorf("deployment wants %d replicas (cpu %s), want %d", got, util, want)
	}
	return nil
}

// predictReplicas runs the HPA controller's algorithm for a Utilization
// target on the simulated model: desired = ceil(n × utilization/target),
// unchanged within the default 10% tolerance, clamped to [min, max].
func predictReplicas(n, max int, base, perRequest float64, rps int, request, target float64) int {
	for i := 0; i < 20; i++ {
		util := (base + perRequest*float64(rps)/float64(n)) / request
		ratio := util / target
		if math.Abs(1-ratio) <= 0.1 {
			return n
		}
		next := min(max, int(math.Ceil(float64(n)*ratio)))
		if next == n {
			return n
		}
		n = next
	}
	return n
}
