package server

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func TestSlim(t *testing.T) {
	managed := []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}}
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"a": "b"}, ManagedFields: managed},
		Status: corev1.NodeStatus{
			Images:    []corev1.ContainerImage{{Names: []string{"registry.example/app:1"}, SizeBytes: 1}},
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "10.0.0.1"}},
		},
	}
	pod := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"app": "x"}, ManagedFields: managed}}
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/p", Obj: pod}

	for _, obj := range []any{node, pod, tomb} {
		if _, err := slim(obj); err != nil {
			t.Fatalf("%T: %v", obj, err)
		}
	}
	if node.ManagedFields != nil || node.Status.Images != nil {
		t.Errorf("node keeps managed fields or images: %+v", node)
	}
	if node.Labels["a"] != "b" || len(node.Status.Addresses) != 1 {
		t.Errorf("node lost what readers use: %+v", node)
	}
	if pod.ManagedFields != nil || pod.Labels["app"] != "x" || pod.Namespace != "ns" {
		t.Errorf("pod metadata %+v", pod.ObjectMeta)
	}
}
