package kubeagent

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/clock"

	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

// Addresses clear of simkubelet's defaults and of package sim's tests.
var (
	nodeIP  = netip.MustParseAddr("127.0.0.201")
	podBase = netip.MustParseAddr("127.78.0.0")
)

func startAgent(t *testing.T, objs ...runtime.Object) (*fake.Clientset, *sim.Sim) {
	t.Helper()
	client := fake.NewClientset(objs...)
	s, err := sim.New(sim.Config{Nodes: []sim.NodeConfig{{Name: "sim-node-0", IP: nodeIP}}, PodCIDRBase: podBase, Clock: clock.RealClock{}})
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Client: client, Sim: s, KubeletPort: 10250, KubeletVersion: "v1.37.2"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		a.Wait()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return client, s
}

func TestRegisterNode(t *testing.T) {
	// A node left over with the taint admission adds, and a stale label.
	old := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "sim-node-0", Labels: map[string]string{"keep": "me"}},
		Spec: corev1.NodeSpec{Taints: []corev1.Taint{
			{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule},
			{Key: "dedicated", Value: "x", Effect: corev1.TaintEffectNoSchedule},
		}},
	}
	client, _ := startAgent(t, old)
	ctx := context.Background()
	n, err := client.CoreV1().Nodes().Get(ctx, "sim-node-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"keep": "me", corev1.LabelHostname: "sim-node-0", corev1.LabelOSStable: "linux", corev1.LabelArchStable: "amd64"} {
		if n.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, n.Labels[k], v)
		}
	}
	if len(n.Spec.Taints) != 1 || n.Spec.Taints[0].Key != "dedicated" {
		t.Errorf("taints = %v, want only dedicated", n.Spec.Taints)
	}
	if got := n.Status.Allocatable.Cpu().String(); got != "4" {
		t.Errorf("allocatable cpu = %s", got)
	}
	if got := n.Status.Capacity.Memory().String(); got != "8Gi" {
		t.Errorf("capacity memory = %s", got)
	}
	if n.Status.DaemonEndpoints.KubeletEndpoint.Port != 10250 {
		t.Errorf("kubelet port = %d", n.Status.DaemonEndpoints.KubeletEndpoint.Port)
	}
	wantAddr := []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: nodeIP.String()}, {Type: corev1.NodeHostName, Address: "sim-node-0"}}
	if len(n.Status.Addresses) != 2 || n.Status.Addresses[0] != wantAddr[0] || n.Status.Addresses[1] != wantAddr[1] {
		t.Errorf("addresses = %v", n.Status.Addresses)
	}
	ready := false
	for _, c := range n.Status.Conditions {
		ready = ready || (c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue)
	}
	if !ready {
		t.Errorf("not Ready: %v", n.Status.Conditions)
	}
	l, err := client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "sim-node-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *l.Spec.HolderIdentity != "sim-node-0" || l.Spec.RenewTime == nil {
		t.Errorf("lease spec = %+v", l.Spec)
	}
}

func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(podBase.Next().String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// TestPodLifecycle runs a pod bound to a simulated node: it must be reported
// Running with a pod IP that serves, then be stopped and deleted once marked
// for deletion.
func TestPodLifecycle(t *testing.T) {
	port := freePort(t)
	client, s := startAgent(t)
	ctx := context.Background()
	pods := client.CoreV1().Pods("default")
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-1", Namespace: "default", UID: "uid-1"},
		Spec: corev1.PodSpec{NodeName: "sim-node-0", Containers: []corev1.Container{
			{Name: "app", Image: "ghcr.io/stefanprodan/podinfo:6.7.0", Ports: []corev1.ContainerPort{{ContainerPort: port}}},
		}},
	}
	other := pod.DeepCopy()
	other.Name, other.UID, other.Spec.NodeName = "elsewhere", "uid-2", "real-node"
	for _, p := range []*corev1.Pod{pod, other} {
		if _, err := pods.Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var got *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		var err error
		got, err = pods.Get(ctx, "web-1", metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.PodRunning, err
	})
	if err != nil {
		t.Fatalf("pod never Running: %v", err)
	}
	running := s.Pod("default/web-1")
	if running == nil || got.Status.PodIP != running.IP.String() || got.Status.HostIP != nodeIP.String() {
		t.Fatalf("status %+v does not match simulated pod %+v", got.Status, running)
	}
	if cs := got.Status.ContainerStatuses; len(cs) != 1 || !cs[0].Ready || cs[0].State.Running == nil || cs[0].ContainerID == "" {
		t.Errorf("container statuses = %+v", cs)
	}
	if !statusCurrent(got, running) {
		t.Error("statusCurrent is false after the patch: every update would patch again")
	}
	if s.Pod("default/elsewhere") != nil {
		t.Error("started a pod bound to another node")
	}

	now := metav1.Now()
	got.DeletionTimestamp, got.DeletionGracePeriodSeconds = &now, new(int64(30))
	if _, err := pods.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, 10*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, "web-1", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("pod never deleted: %v", err)
	}
	if s.Pod("default/web-1") != nil {
		t.Error("simulated pod still running after deletion")
	}
}

// TestSpecFor: what /metrics/cadvisor needs from the pod (images, limits,
// QoS class) reaches the simulation, sidecars included.
func TestSpecFor(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-1", UID: "u1"},
		Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{
				{Name: "init", Image: "busybox:1.37"},
				{Name: "proxy", Image: "envoy:1.33", RestartPolicy: &always},
			},
			Containers: []corev1.Container{{Name: "app", Image: "ghcr.io/stefanprodan/podinfo:6.7.1", Resources: corev1.ResourceRequirements{
				Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("256Mi")},
			}}},
		},
		Status: corev1.PodStatus{QOSClass: corev1.PodQOSBurstable},
	}
	s := specFor(pod)
	if !slices.Equal(s.Containers, []string{"proxy", "app"}) || !slices.Equal(s.Images, []string{"envoy:1.33", "ghcr.io/stefanprodan/podinfo:6.7.1"}) {
		t.Errorf("containers %v images %v", s.Containers, s.Images)
	}
	want := []sim.ContainerLimits{{}, {CPUCores: 0.5, MemoryBytes: 256 << 20}}
	if !slices.Equal(s.Limits, want) || s.QOSClass != "Burstable" {
		t.Errorf("limits %v QoS %q, want %v Burstable", s.Limits, s.QOSClass, want)
	}
}
