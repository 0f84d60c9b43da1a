package pods

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Pod is what the gateway keeps of a running pod. The embedded
// PartialObjectMetadata (managed fields dropped) is what metrics-server's
// API and the custom metrics API read; the other fields are those from
// which Prometheus' kubernetes_sd_configs role pod builds target labels.
type Pod struct {
	metav1.PartialObjectMetadata
	NodeName string
	PodIP    string
	HostIP   string
	Phase    corev1.PodPhase
	// Ready is the status of the PodReady condition, "" without one, and
	// ReadySince its last transition; StartTime is the kubelet's. The HPA
	// controller reads these three, and so does the autoscaling history.
	Ready      corev1.ConditionStatus
	ReadySince metav1.Time
	StartTime  metav1.Time
	// Containers are the regular containers, then the init containers.
	Containers []Container
}

// Container is what pod discovery reads of a container.
type Container struct {
	Name  string
	Image string
	// ID is the runtime's container ID from the container's status.
	ID   string
	Init bool
	// Sidecar is a restartable init container (restartPolicy Always).
	Sidecar bool
	Ports   []corev1.ContainerPort
	// CPURequest and MemoryRequest are the requests in milli-units
	// (resource.Quantity.MilliValue), -1 when not set: what the HPA
	// controller divides usage by.
	CPURequest, MemoryRequest int64
}

var _ runtime.Object = (*Pod)(nil)

// DeepCopyObject implements runtime.Object.
func (p *Pod) DeepCopyObject() runtime.Object {
	out := *p
	out.PartialObjectMetadata = *p.PartialObjectMetadata.DeepCopy()
	out.Containers = make([]Container, len(p.Containers))
	for i, c := range p.Containers {
		c.Ports = append([]corev1.ContainerPort(nil), c.Ports...)
		out.Containers[i] = c
	}
	return &out
}

// Slim turns a *corev1.Pod into a *Pod; it is the informer's transform. A
// *Pod (the transform may see an object twice) and anything else pass
// through unchanged.
func Slim(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &Pod{
		PartialObjectMetadata: metav1.PartialObjectMetadata{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
			ObjectMeta: p.ObjectMeta,
		},
		NodeName: p.Spec.NodeName,
		PodIP:    p.Status.PodIP,
		HostIP:   p.Status.HostIP,
		Phase:    p.Status.Phase,
	}
	if p.Status.StartTime != nil {
		out.StartTime = *p.Status.StartTime
	}
	out.ManagedFields = nil
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			out.Ready, out.ReadySince = c.Status, c.LastTransitionTime
			break
		}
	}
	out.Containers = make([]Container, 0, len(p.Spec.Containers)+len(p.Spec.InitContainers))
	for _, c := range p.Spec.Containers {
		out.Containers = append(out.Containers, container(c, p.Status.ContainerStatuses, false))
	}
	for _, c := range p.Spec.InitContainers {
		out.Containers = append(out.Containers, container(c, p.Status.InitContainerStatuses, true))
	}
	pack(out)
	return out, nil
}

func container(c corev1.Container, statuses []corev1.ContainerStatus, init bool) Container {
	out := Container{Name: c.Name, Image: c.Image, Init: init, CPURequest: -1, MemoryRequest: -1}
	out.Sidecar = init && c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		out.CPURequest = q.MilliValue()
	}
	if q, ok := c.Resources.Requests[corev1.ResourceMemory]; ok {
		out.MemoryRequest = q.MilliValue()
	}
	if len(c.Ports) > 0 {
		out.Ports = make([]corev1.ContainerPort, len(c.Ports))
		for i, p := range c.Ports {
			out.Ports[i] = corev1.ContainerPort{Name: p.Name, ContainerPort: p.ContainerPort, Protocol: p.Protocol}
		}
	}
	for _, s := range statuses {
		if s.Name == c.Name {
			out.ID = s.ContainerID
			break
		}
	}
	return out
}

// runningOnly is metrics-server's pod filter: only running pods have
// usage, and only they serve metrics.
const runningOnly = "status.phase=Running"

// NewInformer returns the informer of running pods, holding *Pod objects
// indexed by namespace and by label (Indexers). Nobody may change what it
// holds.
func NewInformer(client kubernetes.Interface) cache.SharedIndexInformer {
	// As client-go's generated informers do: a client that cannot stream
	// the initial list (a fake) is listed instead.
	inf := cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(listWatch(client), client), &corev1.Pod{}, cache.SharedIndexInformerOptions{
		Indexers: Indexers(),
	})
	// The informer is new and not running: SetTransform cannot fail.
	_ = inf.SetTransform(Slim)
	return inf
}

// listWatch lists (listSlim) and watches the running pods.
func listWatch(client kubernetes.Interface) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return listSlim(ctx, client, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = runningOnly
			return client.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, o)
		},
	}
}

var podsResource = corev1.Resource("pods")

// Lister lists what the informer holds as *Pod (NewLister).
func Lister(inf cache.SharedIndexInformer) cache.GenericLister {
	return NewLister(inf.GetIndexer())
}

// MetadataLister lists what the informer holds as
// *metav1.PartialObjectMetadata, the form metrics-server's pkg/api reads.
// The objects point into the informer's cache: nobody may change them.
func MetadataLister(inf cache.SharedIndexInformer) cache.GenericLister {
	return metadataLister{Lister(inf)}
}

type metadataLister struct{ l cache.GenericLister }

func (m metadataLister) List(s labels.Selector) ([]runtime.Object, error) {
	return metadataOf(m.l.List(s))
}

func (m metadataLister) Get(name string) (runtime.Object, error) {
	return metadataOne(m.l.Get(name))
}

func (m metadataLister) ByNamespace(ns string) cache.GenericNamespaceLister {
	return metadataNamespaceLister{m.l.ByNamespace(ns)}
}

type metadataNamespaceLister struct{ l cache.GenericNamespaceLister }

func (m metadataNamespaceLister) List(s labels.Selector) ([]runtime.Object, error) {
	return metadataOf(m.l.List(s))
}

func (m metadataNamespaceLister) Get(name string) (runtime.Object, error) {
	return metadataOne(m.l.Get(name))
}

func metadataOf(objs []runtime.Object, err error) ([]runtime.Object, error) {
	if err != nil {
		return nil, err
	}
	for i, o := range objs {
		if objs[i], err = metadataOne(o, nil); err != nil {
			return nil, err
		}
	}
	return objs, nil
}

func metadataOne(o runtime.Object, err error) (runtime.Object, error) {
	if err != nil {
		return nil, err
	}
	p, ok := o.(*Pod)
	if !ok {
		return nil, fmt.Errorf("pod cache holds %T, want *pods.Pod", o)
	}
	return &p.PartialObjectMetadata, nil
}
