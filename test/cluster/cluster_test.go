package cluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
)

// logWriter sends progress lines to t.Log: shown with -v and on failure.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startCluster starts a control plane for one test and stops it at cleanup, printing
// every component's log tail if the test failed.
func startCluster(t *testing.T) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd and a control plane; skipped with -short")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	begin := time.Now()
	c, err := Start(ctx, Options{Dir: dir, Stdout: logWriter{t}})
	if err != nil {
		t.Fatalf("start control plane: %v", err)
	}
	t.Logf("cold start took %s", time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("component logs:\n%s", c.LogTails(40))
		}
		if err := c.Stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return c
}

func TestControlPlaneRunsDeployments(t *testing.T) {
	c := startCluster(t)
	client, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	const ns = "harness-test"
	if _, err := client.CoreV1().Namespaces().Create(ctx,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "web"}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
	// The namespace is new, so this also exercises the serviceaccount controller: pods
	// are only admitted once it has created harness-test/default.
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	rsName := waitReplicaSet(ctx, t, client, ns, "web")
	waitPods(ctx, t, client, ns, rsName, 2)

	if tails := c.LogTails(5); !strings.Contains(tails, "----- kube-apiserver") ||
		!strings.Contains(tails, "----- kube-scheduler") {
		t.Errorf("LogTails lacks component sections:\n%s", tails)
	}
	pids := make([]*Process, len(c.procs))
	copy(pids, c.procs)
	if err := c.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, p := range pids {
		if pidAlive(p.pid) {
			t.Errorf("%s (pid %d) still running after Stop", p.name, p.pid)
		}
	}
}

// waitReplicaSet waits for the deployment controller to create a ReplicaSet owned by
// deployment name and returns its name.
func waitReplicaSet(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, name string) string {
	t.Helper()
	var rsName string
	err := Poll(ctx, 200*time.Millisecond, time.Minute, "ReplicaSet of "+name, func() error {
		list, err := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return StopPoll{err}
		}
		for _, rs := range list.Items {
			if ref := metav1.GetControllerOf(&rs); ref != nil && ref.Kind == "Deployment" && ref.Name == name {
				rsName = rs.Name
				return nil
			}
		}
		return errors.New("none yet")
	})
	if err != nil {
		t.Fatalf("no ReplicaSet for deployment %s/%s: %v", ns, name, err)
	}
	return rsName
}

// waitPods waits for want pods owned by ReplicaSet rsName. With no nodes they stay
// Pending, which is all this harness promises.
func waitPods(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, rsName string, want int) {
	t.Helper()
	var last string
	err := Poll(ctx, 200*time.Millisecond, time.Minute, fmt.Sprintf("%d pods of %s", want, rsName), func() error {
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return StopPoll{err}
		}
		n := 0
		var phases []string
		for _, p := range list.Items {
			if ref := metav1.GetControllerOf(&p); ref != nil && ref.Name == rsName {
				n++
				phases = append(phases, fmt.Sprintf("%s=%s", p.Name, p.Status.Phase))
			}
		}
		last = strings.Join(phases, " ")
		if n != want {
			return fmt.Errorf("%d pods: %s", n, last)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("want %d pods of %s, have [%s]: %v", want, rsName, last, err)
	}
	t.Logf("pods: %s", last)
}

func TestStartRefusesRunningDir(t *testing.T) {
	c := startCluster(t)
	_, err := Start(context.Background(), Options{Dir: c.Dir, Stdout: logWriter{t}})
	if err == nil || !strings.Contains(err.Error(), "still running") {
		t.Fatalf("second Start on a live dir: err = %v, want 'still running'", err)
	}
	// The refused Start must not have touched the running cluster's state.
	if _, err := os.Stat(c.layout.pki(caName + ".crt")); err != nil {
		t.Fatal(err)
	}
	for _, s := range c.Status(context.Background()) {
		if s.Healthy != nil || s.PID == 0 {
			t.Errorf("%s after refused Start: pid %d, health %v", s.Name, s.PID, s.Healthy)
		}
	}
}
