package pods

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
)

// pageSize is how many Pods the informer's list asks for at a time: as
// client-go's pager, whose default it is.
const pageSize = 500

// slimList is the running pods as the informer's list function returns
// them: already slim, so that the reflector never holds the whole cluster's
// full Pods.
type slimList struct {
	metav1.TypeMeta
	metav1.ListMeta
	Items []*Pod
}

var _ runtime.Object = (*slimList)(nil)

// DeepCopyObject implements runtime.Object.
func (l *slimList) DeepCopyObject() runtime.Object {
	out := &slimList{TypeMeta: l.TypeMeta, ListMeta: *l.ListMeta.DeepCopy(), Items: make([]*Pod, len(l.Items))}
	for i, p := range l.Items {
		out.Items[i] = p.DeepCopyObject().(*Pod)
	}
	return out
}

// listSlim lists the running pods a page at a time and slims each page
// before it asks for the next, so at most one page of full Pods is decoded
// at once.
//
// The informer lists only when kube-apiserver cannot stream the initial
// list (an etcd older than 3.4.31 or 3.5.13, or a storage such as kine
// without progress notifications): a stream passes each Pod through the
// transform as it arrives, but a list is decoded whole before the
// transform sees any of it. At 1,000 nodes × 30 pods that whole list was
// 287 MB of the gateway's 531 MB startup peak (docs/benchmarks.md).
//
// The reflector's first list asks for resourceVersion 0, which the
// apiserver answers whole from its watch cache, ignoring the limit. The
// most recent version ("") is always a valid answer to that and etcd pages
// it; the reflector needs only the list's version, which every page of one
// list shares.
func listSlim(ctx context.Context, client kubernetes.Interface, o metav1.ListOptions) (*slimList, error) {
	o.FieldSelector = runningOnly
	o.Limit = pageSize
	if o.ResourceVersion == "0" {
		o.ResourceVersion, o.ResourceVersionMatch = "", ""
	}
	out := &slimList{}
	for {
		page, err := client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, o)
		if err != nil {
			return nil, err
		}
		if out.ResourceVersion == "" {
			out.ResourceVersion = page.ResourceVersion
		}
		out.Items = appendSlim(out.Items, page.Items)
		if page.Continue == "" {
			return out, nil
		}
		// A continued list names its version in the token alone.
		o.Continue, o.ResourceVersion, o.ResourceVersionMatch = page.Continue, "", ""
	}
}

func appendSlim(out []*Pod, page []corev1.Pod) []*Pod {
	for i := range page {
		s, _ := Slim(&page[i])
		out = append(out, s.(*Pod))
	}
	return out
}
