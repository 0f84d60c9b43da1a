package soak

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/metrics-gateway/metrics-gateway/test/env"
	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

// workload is a Deployment of simulated pods, one container each.
type workload struct {
	ns, name    string
	replicas    int32
	cpuRequest  string
	scrape      bool
	annotations map[string]string
}

func (w workload) create(ctx context.Context, t *testing.T, e *env.Env) {
	t.Helper()
	labels := map[string]string{"app": w.name}
	ann := map[string]string{sim.AnnotationCPUBase: "0.02", sim.AnnotationCPUPerRequest: "0.001", sim.AnnotationMemory: fmt.Sprint(48 << 20)}
	if w.scrape {
		ann["prometheus.io/scrape"], ann["prometheus.io/port"] = "true", "8080"
	}
	maps.Copy(ann, w.annotations)
	c := corev1.Container{Name: "app", Image: "sim/podinfo:1", Ports: []corev1.ContainerPort{{ContainerPort: 8080, Name: "http"}}}
	if w.cpuRequest != "" {
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(w.cpuRequest)}
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: w.name, Namespace: w.ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(w.replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: ann},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{c}, TerminationGracePeriodSeconds: ptr.To[int64](0)},
			},
		},
	}
	if _, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: w.ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := e.Client.AppsV1().Deployments(w.ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		dep, err := e.Client.AppsV1().Deployments(w.ns).Get(ctx, w.name, metav1.GetOptions{})
		if err == nil && dep.Status.AvailableReplicas >= w.replicas {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s: not %d available replicas within 3m: %+v %v", w.ns, w.name, w.replicas, dep.Status, err)
		}
		time.Sleep(time.Second)
	}
}

// normalWorkload is what runs beside the churn: a web tier scaled on cpu,
// a queue tier scaled on a custom metric, each under load, and idle
// deployments that fill the nodes.
type normalWorkload struct {
	hpas []hpaRef
	pods int32
}

// hpaRef names an HPA and its Deployment (the same name).
type hpaRef struct{ ns, name string }

func (n normalWorkload) String() string {
	return fmt.Sprintf("%d pods, HPAs %v", n.pods, n.hpas)
}

func startWorkload(ctx context.Context, t *testing.T, e *env.Env) normalWorkload {
	t.Helper()
	var n normalWorkload
	web := workload{ns: "soak-web", name: "web", replicas: 4, cpuRequest: "100m"}
	queue := workload{ns: "soak-queue", name: "queue", replicas: 3, scrape: true}
	idle := make([]workload, 10)
	for i := range idle {
		idle[i] = workload{ns: "soak-idle", name: fmt.Sprintf("idle-%d", i), replicas: 10, scrape: i%2 == 0}
	}
	for _, w := range append([]workload{web, queue}, idle...) {
		w.create(ctx, t, e)
		n.pods += w.replicas
	}
	// cpu: (0.02 + 0.001 x 120/4) / 0.1 = 50% at 4 replicas, the target.
	createHPA(ctx, t, e, web, 2, 8, autoscalingv2.MetricSpec{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
		Name: corev1.ResourceCPU, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: ptr.To[int32](50)},
	}})
	// http_requests (the zero-config rate of http_requests_total): 10/s a
	// pod at 3 replicas, the target.
	createHPA(ctx, t, e, queue, 1, 6, autoscalingv2.MetricSpec{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{
		Metric: autoscalingv2.MetricIdentifier{Name: "http_requests"},
		Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: ptr.To(resource.MustParse("10"))},
	}})
	loadCtx, stop := context.WithCancel(ctx)
	t.Cleanup(stop)
	for _, l := range []struct {
		w   workload
		rps int
	}{{web, 120}, {queue, 30}} {
		go func() { _, _ = e.Load(loadCtx, l.w.ns, "app="+l.w.name, l.rps) }()
		n.hpas = append(n.hpas, hpaRef{l.w.ns, l.w.name})
	}
	return n
}

func createHPA(ctx context.Context, t *testing.T, e *env.Env, w workload, least, most int32, metric autoscalingv2.MetricSpec) {
	t.Helper()
	hpa := env.HPA(w.ns, w.name, least, most, metric)
	if _, err := e.Client.AutoscalingV2().HorizontalPodAutoscalers(w.ns).Create(ctx, hpa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
