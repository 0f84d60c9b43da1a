package e2e

import (
	"context"
	"os"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Each scenario of TestEndToEnd can run alone (go test -run
// 'TestEndToEnd/<name>'): what it needs from the scenarios before it in the
// full run it makes here, and finds already made in the full run, at the
// cost of one list.

// ensureTopWorkloads: kubectl top's workloads (testKubectlTop).
func ensureTopWorkloads(ctx context.Context, t *testing.T) {
	t.Helper()
	for _, d := range topWorkloads {
		d.create(ctx, t)
	}
}

// ensurePodinfo: the annotated podinfo pods (testZeroConfigCustomMetrics),
// with their http_requests served.
func ensurePodinfo(ctx context.Context, t *testing.T) {
	t.Helper()
	podinfo.create(ctx, t)
	// Its HPA too, as the custom metrics scenario makes it: the HPA
	// dashboard charts it.
	createHPA(ctx, t, podinfo, 2, 10, requestsPerPod(10))
	eventually(t, 2*time.Minute, "podinfo's http_requests", func() error {
		_, err := podValues(ctx, customV1beta2, podinfo, "http_requests")
		return err
	})
}

// requestsPerPod is the k8s-prom-hpa walkthrough's metric: the Pods metric
// http_requests at an average of target per pod.
func requestsPerPod(target int64) autoscalingv2.MetricSpec {
	return autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "http_requests"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(target, resource.DecimalSI)},
	}}
}

// ensureZeroConfig: the gateway without --adapter-config, as TestMain
// starts it; only a scenario run after the external-metric one restarts it.
func ensureZeroConfig(ctx context.Context, t *testing.T) {
	t.Helper()
	if e.Gateway.AdapterConfigFile == "" {
		return
	}
	if err := e.Gateway.Restart(ctx, ""); err != nil {
		t.Fatal(err)
	}
}

// ensureQueueWorkers: the gateway on testdata/adapter-config.yaml, the
// queue and worker deployments and the workers' External HPA on
// queue_depth (testHPAScalesOnExternalMetric), queue_depth listed.
func ensureQueueWorkers(ctx context.Context, t *testing.T) {
	t.Helper()
	if e.Gateway.AdapterConfigFile == "" {
		adapterConfig, err := os.ReadFile("testdata/adapter-config.yaml")
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		if err := e.Gateway.Restart(ctx, string(adapterConfig)); err != nil {
			t.Fatal(err)
		}
		t.Logf("gateway restarted with --adapter-config %s; every API answers again after %v", e.Gateway.AdapterConfigFile, time.Since(start).Round(100*time.Millisecond))
	}
	queue.create(ctx, t)
	worker.create(ctx, t)
	createHPA(ctx, t, worker, 1, 10, autoscalingv2.MetricSpec{Type: autoscalingv2.ExternalMetricSourceType, External: &autoscalingv2.ExternalMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "queue_depth"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(perWorker, resource.DecimalSI)},
	}})
	eventually(t, 90*time.Second, "queue_depth listed on external.metrics.k8s.io", func() error {
		return requireListed(ctx, externalV1beta1, "queue_depth")
	})
}
