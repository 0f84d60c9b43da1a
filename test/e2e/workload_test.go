package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// deployment describes a simulated workload: every container uses cpuBase
// cores plus cpuPerRequest per request/s the pod receives, and memory bytes.
type deployment struct {
	ns, name      string
	replicas      int32
	containers    []string
	cpuRequest    string
	cpuBase       float64
	cpuPerRequest float64
	memory        int64
}

func (d deployment) object() *appsv1.Deployment {
	labels := map[string]string{"app": d.name}
	var cs []corev1.Container
	for i, c := range d.containers {
		ctr := corev1.Container{Name: c, Image: "sim/podinfo:1"}
		if i == 0 {
			ctr.Ports = []corev1.ContainerPort{{ContainerPort: 8080, Name: "http"}}
		}
		if d.cpuRequest != "" {
			ctr.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(d.cpuRequest)}
		}
		cs = append(cs, ctr)
	}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: d.name, Namespace: d.ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(d.replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					"sim.metrics-gateway.io/cpu-base":        fmt.Sprint(d.cpuBase),
					"sim.metrics-gateway.io/cpu-per-request": fmt.Sprint(d.cpuPerRequest),
					"sim.metrics-gateway.io/memory":          fmt.Sprint(d.memory),
				}},
				Spec: corev1.PodSpec{Containers: cs, TerminationGracePeriodSeconds: ptr.To[int64](0)},
			},
		},
	}
}

// create makes the namespace and deployment and waits for every replica to run.
func (d deployment) create(ctx context.Context, t *testing.T) {
	t.Helper()
	if _, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.ns}}, metav1.CreateOptions{}); err != nil && !isAlreadyExists(err) {
		t.Fatal(err)
	}
	if _, err := e.Client.AppsV1().Deployments(d.ns).Create(ctx, d.object(), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Minute, d.name+" running", func() error { return runningPods(ctx, d.ns, "app="+d.name, int(d.replicas)) })
}

func runningPods(ctx context.Context, ns, selector string, want int) error {
	pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return err
	}
	n := 0
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			n++
		}
	}
	if n != want {
		return fmt.Errorf("%d running pods, want %d", n, want)
	}
	return nil
}
