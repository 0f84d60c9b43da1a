package pods

import (
	"math"
	"reflect"
	"runtime"
	"testing"
	"unsafe"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// deploymentPod is a pod as a Deployment's ReplicaSet makes it and a
// kubelet reports it: what an informer holds most of in a real cluster.
func deploymentPod() *corev1.Pod {
	p := fullPod()
	p.Name, p.GenerateName, p.UID = "web-7d4b9c6f5d-x2k8q", "web-7d4b9c6f5d-", "3f2a8a1e-5c0b-4f7e-9d2a-6b1e0c9d8f7a"
	p.ResourceVersion = "123456789"
	p.Labels = map[string]string{"app.kubernetes.io/name": "web", "pod-template-hash": "7d4b9c6f5d"}
	p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-7d4b9c6f5d",
		UID: "9c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}}
	p.Status.Conditions[0].Status = corev1.ConditionTrue
	return p
}

// BenchmarkSlimRetained reports what the informer keeps per pod: the heap
// objects and bytes of a slim Pod made from a protobuf-decoded Pod (each
// string its own allocation, as the apiserver's answers are decoded),
// after the full Pod is garbage. The GC marks every one of these objects
// in every cycle.
func BenchmarkSlimRetained(b *testing.B) {
	for _, tc := range []struct {
		name string
		pod  *corev1.Pod
	}{{"fixture", fullPod()}, {"deployment", deploymentPod()}} {
		b.Run(tc.name, func(b *testing.B) {
			wire, err := tc.pod.Marshal()
			if err != nil {
				b.Fatal(err)
			}
			const n = 10000
			kept := make([]any, n)
			for b.Loop() {
				clear(kept)
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				for i := range kept {
					var full corev1.Pod
					if err := full.Unmarshal(wire); err != nil {
						b.Fatal(err)
					}
					kept[i], _ = Slim(&full)
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapObjects-before.HeapObjects)/n, "objects/pod")
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/pod")
			}
			runtime.KeepAlive(kept)
		})
	}
}

// TestSlimPacksStrings: a slim Pod made from a decoded Pod keeps its
// strings side by side in one array, the enumerated values as the
// package's constants, and every value as it was.
func TestSlimPacksStrings(t *testing.T) {
	wire, err := deploymentPod().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var full corev1.Pod
	if err := full.Unmarshal(wire); err != nil {
		t.Fatal(err)
	}
	got, _ := Slim(&full)
	want, _ := Slim(deploymentPod())
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Slim of the decoded pod:\n got  %+v\n want %+v", got, want)
	}
	p := got.(*Pod)
	var kept []string
	p.eachString(func(s *string) { kept = append(kept, *s) })
	for k, v := range p.Labels {
		kept = append(kept, k, v)
	}
	for k, v := range p.Annotations {
		kept = append(kept, k, v)
	}
	lo, hi, size := uintptr(math.MaxUint), uintptr(0), uintptr(0)
	for _, s := range kept {
		if s == "" {
			continue
		}
		start := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		lo, hi, size = min(lo, start), max(hi, start+uintptr(len(s))), size+uintptr(len(s))
	}
	if size == 0 || hi-lo != size {
		t.Errorf("the %d bytes of %d strings span %d bytes: not packed side by side", size, len(kept), hi-lo)
	}
	for name, pair := range map[string][2]string{
		"phase":    {string(p.Phase), string(corev1.PodRunning)},
		"ready":    {string(p.Ready), string(corev1.ConditionTrue)},
		"protocol": {string(p.Containers[0].Ports[0].Protocol), string(corev1.ProtocolTCP)},
	} {
		if unsafe.StringData(pair[0]) != unsafe.StringData(pair[1]) {
			t.Errorf("%s %q is a copy, not the constant", name, pair[0])
		}
	}
}

// TestSlimLeavesItsInputAlone: the transform may see a Pod that others
// read; packing must not write into it.
func TestSlimLeavesItsInputAlone(t *testing.T) {
	in := deploymentPod()
	in.Finalizers = []string{"example.com/keep"}
	before := in.DeepCopy()
	owner, fin := unsafe.StringData(in.OwnerReferences[0].Name), unsafe.StringData(in.Finalizers[0])
	if _, err := Slim(in); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, before) || unsafe.StringData(in.OwnerReferences[0].Name) != owner || unsafe.StringData(in.Finalizers[0]) != fin {
		t.Error("Slim wrote into the Pod it was given")
	}
}
