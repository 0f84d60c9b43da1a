package kubeagent

import (
	"context"
	"fmt"
	"maps"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"

	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

// Every simulated node has the same shape; tests size their pods against it.
var nodeCapacity = corev1.ResourceList{
	corev1.ResourceCPU:    *resource.NewQuantity(sim.NodeCPUCores, resource.DecimalSI),
	corev1.ResourceMemory: *resource.NewQuantity(sim.NodeMemoryBytes, resource.BinarySI),
	corev1.ResourcePods:   resource.MustParse("110"),
}

func nodeLabels(name string) map[string]string {
	return map[string]string{
		corev1.LabelHostname:   name,
		corev1.LabelOSStable:   "linux",
		corev1.LabelArchStable: "amd64",
	}
}

// registerNode creates the Node, or adopts one left by an earlier run, reports it
// Ready, lifts the not-ready taint and takes its Lease.
func (a *Agent) registerNode(ctx context.Context, n *sim.Node) error {
	nodes := a.cfg.Client.CoreV1().Nodes()
	obj := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: nodeLabels(n.Name)}}
	a.setStatus(obj, n)
	created, err := nodes.Create(ctx, obj, metav1.CreateOptions{})
	switch {
	case err == nil:
		a.setUID(created)
	case apierrors.IsAlreadyExists(err):
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cur, err := nodes.Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if cur.Labels == nil {
				cur.Labels = map[string]string{}
			}
			maps.Copy(cur.Labels, nodeLabels(n.Name))
			updated, err := nodes.Update(ctx, cur, metav1.UpdateOptions{})
			if err == nil {
				a.setUID(updated)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("update existing node %s: %w", n.Name, err)
		}
	default:
		return fmt.Errorf("create node %s: %w", n.Name, err)
	}
	if err := a.updateStatus(ctx, n); err != nil {
		return err
	}
	if err := a.renewLease(ctx, n.Name); err != nil {
		return err
	}
	klog.InfoS("Registered node", "node", n.Name, "internalIP", n.IP, "kubeletPort", a.cfg.KubeletPort)
	return nil
}

func (a *Agent) setUID(n *corev1.Node) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.uids[n.Name] = n.UID
}

// setStatus writes what a healthy kubelet reports, keeping transition times of
// conditions that did not change so watchers see a steady node.
func (a *Agent) setStatus(obj *corev1.Node, n *sim.Node) {
	now := metav1.NewTime(a.cfg.Sim.Clock().Now())
	st := &obj.Status
	st.Capacity = nodeCapacity.DeepCopy()
	st.Allocatable = nodeCapacity.DeepCopy()
	st.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: n.IP.String()},
		{Type: corev1.NodeHostName, Address: n.Name},
	}
	st.DaemonEndpoints.KubeletEndpoint.Port = int32(a.cfg.KubeletPort)
	st.Phase = corev1.NodeRunning
	st.NodeInfo = corev1.NodeSystemInfo{
		MachineID: sim.MachineID(n.Name), SystemUUID: sim.MachineID(n.Name), BootID: sim.MachineID(n.Name),
		KernelVersion: sim.KernelVersion, OSImage: "simkubelet", ContainerRuntimeVersion: "containerd://2.0.0-sim",
		KubeletVersion: a.cfg.KubeletVersion, OperatingSystem: "linux", Architecture: "amd64",
	}
	want := []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "kubelet is posting ready status"},
	}
	old := map[corev1.NodeConditionType]corev1.NodeCondition{}
	for _, c := range st.Conditions {
		old[c.Type] = c
	}
	for i := range want {
		want[i].LastHeartbeatTime = now
		want[i].LastTransitionTime = now
		if o, ok := old[want[i].Type]; ok && o.Status == want[i].Status && !o.LastTransitionTime.IsZero() {
			want[i].LastTransitionTime = o.LastTransitionTime
		}
	}
	st.Conditions = want
}

// updateStatus posts the node status and then lifts the not-ready taint, in that
// order, as the taint would be lifted after a kubelet's first Ready.
func (a *Agent) updateStatus(ctx context.Context, n *sim.Node) error {
	nodes := a.cfg.Client.CoreV1().Nodes()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := nodes.Get(ctx, n.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		a.setStatus(cur, n)
		_, err = nodes.UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("update status of node %s: %w", n.Name, err)
	}
	return a.liftNotReadyTaint(ctx, n.Name)
}

// liftNotReadyTaint removes node.kubernetes.io/not-ready, which admission puts on
// every new Node and which only the node lifecycle controller would otherwise
// remove; the test clusters run no controller manager.
func (a *Agent) liftNotReadyTaint(ctx context.Context, name string) error {
	nodes := a.cfg.Client.CoreV1().Nodes()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := nodes.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var keep []corev1.Taint
		for _, t := range cur.Spec.Taints {
			if t.Key != corev1.TaintNodeNotReady {
				keep = append(keep, t)
			}
		}
		if len(keep) == len(cur.Spec.Taints) {
			return nil
		}
		cur.Spec.Taints = keep
		_, err = nodes.Update(ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			klog.InfoS("Lifted not-ready taint", "node", name)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("lift not-ready taint of node %s: %w", name, err)
	}
	return nil
}

func (a *Agent) updateStatuses(ctx context.Context) {
	for _, n := range a.cfg.Sim.Nodes() {
		if err := a.updateStatus(ctx, n); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Node status heartbeat", "node", n.Name)
		}
	}
}

func (a *Agent) renewLeases(ctx context.Context) {
	for _, n := range a.cfg.Sim.Nodes() {
		if err := a.renewLease(ctx, n.Name); err != nil && ctx.Err() == nil {
			klog.ErrorS(err, "Lease heartbeat", "node", n.Name)
		}
	}
}

// renewLease creates or renews the node's Lease in kube-node-lease, owned by the
// Node as a kubelet's is, so deleting the Node collects it.
func (a *Agent) renewLease(ctx context.Context, name string) error {
	leases := a.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(a.cfg.Sim.Clock().Now())
	spec := coordinationv1.LeaseSpec{
		HolderIdentity: new(name), LeaseDurationSeconds: new(int32(leaseDurationSeconds)), RenewTime: &now,
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := leases.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: corev1.NamespaceNodeLease}, Spec: spec}
			a.mu.Lock()
			if uid := a.uids[name]; uid != "" {
				l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: name, UID: uid}}
			}
			a.mu.Unlock()
			_, err = leases.Create(ctx, l, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		cur.Spec.HolderIdentity, cur.Spec.LeaseDurationSeconds, cur.Spec.RenewTime = spec.HolderIdentity, spec.LeaseDurationSeconds, spec.RenewTime
		_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("renew lease of node %s: %w", name, err)
	}
	return nil
}
