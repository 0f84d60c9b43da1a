package server

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func TestSlim(t *testing.T) {
	managed := []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "b"}, ManagedFields: managed},
		Status: corev1.NodeStatus{
			Images:          []corev1.ContainerImage{{Names: []string{"registry.example/app:1"}, SizeBytes: 1}},
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
			NodeInfo:        corev1.NodeSystemInfo{KubeletVersion: "v1.37.2", MachineID: "m"},
			Capacity:        corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
			Allocatable:     corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("4")},
			VolumesInUse:    []corev1.UniqueVolumeName{"v"},
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
				Message: "kubelet is posting ready status", LastHeartbeatTime: metav1.Unix(2, 0), LastTransitionTime: metav1.Unix(1, 0)}},
			Phase:            corev1.NodeRunning,
			DeclaredFeatures: []string{"f"},
		},
		Spec: corev1.NodeSpec{ProviderID: "aws:///i-1", PodCIDR: "10.1.0.0/24", Taints: []corev1.Taint{{Key: "k", Effect: corev1.TaintEffectNoSchedule}}},
	}
	kept := node.DeepCopy()
	kept.ManagedFields = nil
	kept.Spec = corev1.NodeSpec{ProviderID: "aws:///i-1"}
	kept.Status = corev1.NodeStatus{Addresses: kept.Status.Addresses, DaemonEndpoints: kept.Status.DaemonEndpoints,
		Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}
	pod := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"app": "x"}, ManagedFields: managed}}
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: pod}

	for _, obj := range []any{node, pod, tomb} {
		if _, err := slim(obj); err != nil {
			t.Fatalf("%T: %v", obj, err)
		}
	}
	if !reflect.DeepEqual(node, kept) {
		t.Errorf("slim node:\n got  %+v\n want %+v", node, kept)
	}
	if pod.ManagedFields != nil || pod.Labels["app"] != "x" || pod.Namespace != "ns" {
		t.Errorf("pod metadata %+v", pod.ObjectMeta)
	}
}
