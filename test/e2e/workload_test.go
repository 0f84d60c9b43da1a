package e2e

import (
	"context"
	"fmt"
	"maps"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

// deployment describes a simulated workload: every container uses cpuBase
// cores plus cpuPerRequest per request/s the pod receives, and memory bytes.
// With scrape set, its pods carry the prometheus.io annotations the
// gateway's pod job looks for; annotations are added to the pod template.
type deployment struct {
	ns, name      string
	replicas      int32
	containers    []string
	cpuRequest    string
	cpuLimit      string // gives the container CFS throttling series in cAdvisor
	cpuBase       float64
	cpuPerRequest float64
	memory        int64
	scrape        bool
	annotations   map[string]string
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
		if d.cpuLimit != "" {
			ctr.Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(d.cpuLimit)}
		}
		cs = append(cs, ctr)
	}
	annotations := map[string]string{
		sim.AnnotationCPUBase:       fmt.Sprint(d.cpuBase),
		sim.AnnotationCPUPerRequest: fmt.Sprint(d.cpuPerRequest),
		sim.AnnotationMemory:        fmt.Sprint(d.memory),
	}
	if d.scrape {
		annotations["prometheus.io/scrape"] = "true"
		annotations["prometheus.io/port"] = "8080"
	}
	maps.Copy(annotations, d.annotations)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: d.name, Namespace: d.ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(d.replicas),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annotations},
				Spec:       corev1.PodSpec{Containers: cs, TerminationGracePeriodSeconds: ptr.To[int64](0)},
			},
		},
	}
}

// create makes the namespace and deployment and waits for every replica to
// run. A deployment an earlier scenario made is kept as it is, and its
// replicas now (an HPA may have scaled it) are waited for: scenarios that
// need another's workload create it too, so each can run alone.
func (d deployment) create(ctx context.Context, t *testing.T) {
	t.Helper()
	existed := d.submit(ctx, t)
	eventually(t, 2*time.Minute, d.name+" running", func() error {
		want := int(d.replicas)
		if existed {
			cur, err := e.Client.AppsV1().Deployments(d.ns).Get(ctx, d.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			want = int(ptr.Deref(cur.Spec.Replicas, 1))
		}
		return runningPods(ctx, d.ns, "app="+d.name, want)
	})
}

// submit makes the namespace and deployment without waiting, and says
// whether the deployment existed already.
func (d deployment) submit(ctx context.Context, t *testing.T) (existed bool) {
	t.Helper()
	if _, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.ns}}, metav1.CreateOptions{}); err != nil && !isAlreadyExists(err) {
		t.Fatal(err)
	}
	_, err := e.Client.AppsV1().Deployments(d.ns).Create(ctx, d.object(), metav1.CreateOptions{})
	if err != nil && !isAlreadyExists(err) {
		t.Fatal(err)
	}
	return err != nil
}

func runningPods(ctx context.Context, ns, selector string, want int) error {
	pods, err := running(ctx, ns, selector)
	if err != nil {
		return err
	}
	if len(pods) != want {
		return fmt.Errorf("%d running pods, want %d", len(pods), want)
	}
	return nil
}

// running lists the Running pods of ns matching selector that are not
// being deleted.
func running(ctx context.Context, ns, selector string) ([]corev1.Pod, error) {
	pods, err := e.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out, nil
}
