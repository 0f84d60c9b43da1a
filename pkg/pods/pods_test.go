package pods

import (
	"context"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

var (
	started    = metav1.Unix(1700000000, 0)
	readySince = metav1.Unix(1700000030, 0)
)

func fullPod() *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u", Labels: map[string]string{"app": "a"},
			Annotations:   map[string]string{"prometheus.io/scrape": "true"},
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate}}},
		Spec: corev1.PodSpec{NodeName: "n",
			Containers: []corev1.Container{{Name: "app", Image: "i", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP, HostPort: 8080}},
				Env: []corev1.EnvVar{{Name: "SECRET", Value: "not kept"}}, Command: []string{"run"},
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")}}}},
			InitContainers: []corev1.Container{{Name: "init", Image: "b", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways),
				Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}}},
			Volumes: []corev1.Volume{{Name: "v"}},
		},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", HostIP: "192.168.0.1", StartTime: &started,
			Conditions:            []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse, LastTransitionTime: readySince, Message: "not kept"}},
			ContainerStatuses:     []corev1.ContainerStatus{{Name: "app", ContainerID: "cri://a", Image: "i"}},
			InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", ContainerID: "cri://i"}}},
	}
}

func TestSlim(t *testing.T) {
	got, err := Slim(fullPod())
	if err != nil {
		t.Fatal(err)
	}
	want := &Pod{
		PartialObjectMetadata: metav1.PartialObjectMetadata{
			TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "p", UID: "u", Labels: map[string]string{"app": "a"},
				Annotations: map[string]string{"prometheus.io/scrape": "true"}},
		},
		NodeName: "n", PodIP: "10.0.0.1", HostIP: "192.168.0.1", Phase: corev1.PodRunning, Ready: corev1.ConditionFalse,
		ReadySince: readySince, StartTime: started,
		Containers: []Container{
			{Name: "app", Image: "i", ID: "cri://a", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 80, Protocol: corev1.ProtocolTCP}}, CPURequest: 250, MemoryRequest: -1},
			{Name: "init", Image: "b", ID: "cri://i", Init: true, Sidecar: true, CPURequest: -1, MemoryRequest: 64 << 20 * 1000},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Slim:\n got  %+v\n want %+v", got, want)
	}
	if again, _ := Slim(got); again != got {
		t.Error("Slim of a *Pod is not the same *Pod")
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "ns/p"}
	if out, _ := Slim(tomb); !reflect.DeepEqual(out, tomb) {
		t.Error("Slim changed a tombstone")
	}
	cp := got.(*Pod).DeepCopyObject().(*Pod)
	cp.Labels["app"], cp.Containers[0].Ports[0].ContainerPort = "changed", 1
	if want.Labels["app"] != "a" || got.(*Pod).Containers[0].Ports[0].ContainerPort != 80 {
		t.Error("DeepCopyObject shares labels or ports with the original")
	}
}

// TestInformerListers: one informer, read as *Pod and, for metrics-server,
// as PartialObjectMetadata pointing into the same cached object.
func TestInformerListers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inf := NewInformer(fake.NewClientset(fullPod()))
	go inf.RunWithContext(ctx)
	syncCtx, done := context.WithTimeout(ctx, 10*time.Second)
	defer done()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		t.Fatal("informer never synced")
	}
	objs, err := Lister(inf).ByNamespace("ns").List(labels.Everything())
	if err != nil || len(objs) != 1 {
		t.Fatalf("pods: %v %v", objs, err)
	}
	p, ok := objs[0].(*Pod)
	if !ok || p.ManagedFields != nil || len(p.Containers) != 2 {
		t.Fatalf("cached %T %+v: want a slim *Pod", objs[0], objs[0])
	}
	metas, err := MetadataLister(inf).ByNamespace("ns").List(labels.SelectorFromSet(labels.Set{"app": "a"}))
	if err != nil || len(metas) != 1 {
		t.Fatalf("metadata: %v %v", metas, err)
	}
	if m, ok := metas[0].(*metav1.PartialObjectMetadata); !ok || m != &p.PartialObjectMetadata {
		t.Errorf("metadata lister gave %T, want a pointer into the cached pod", metas[0])
	}
	if m, err := MetadataLister(inf).ByNamespace("ns").Get("p"); err != nil || m.(*metav1.PartialObjectMetadata).Name != "p" {
		t.Errorf("get: %v %v", m, err)
	}
	if _, err := MetadataLister(inf).ByNamespace("ns").Get("missing"); err == nil {
		t.Error("get of a missing pod succeeded")
	}
}
