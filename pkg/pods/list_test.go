package pods

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
)

// pagedClient serves n full pods two to a page, whatever the limit asked,
// as etcd does through the apiserver, and records every request; failAt
// is the continue token whose page fails ("" for none).
func pagedClient(n int, failAt string) (*fake.Clientset, *[]metav1.ListOptions) {
	var seen []metav1.ListOptions
	client := fake.NewClientset()
	client.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		o := a.(k8stesting.ListActionImpl).ListOptions
		seen = append(seen, o)
		if failAt != "" && o.Continue == failAt {
			return true, nil, errors.New("the continue token has expired")
		}
		from, _ := strconv.Atoi(o.Continue)
		list := &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: fmt.Sprint(100 + from)}}
		for i := from; i < n && i < from+2; i++ {
			p := fullPod()
			p.Name = fmt.Sprintf("p%d", i)
			list.Items = append(list.Items, *p)
		}
		if from+2 < n {
			list.Continue = fmt.Sprint(from + 2)
		}
		return true, list, nil
	})
	return client, &seen
}

// When the apiserver cannot stream the initial list, the informer's list
// is paged and slimmed page by page: it asks for the most recent version
// (resourceVersion 0 would be answered whole from the watch cache), in
// pages, and keeps the first page's version.
func TestInformerListsInSlimPages(t *testing.T) {
	client, seen := pagedClient(5, "")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	inf := NewInformer(client)
	go inf.RunWithContext(ctx)
	syncCtx, done := context.WithTimeout(ctx, 10*time.Second)
	defer done()
	if !cache.WaitForCacheSync(syncCtx.Done(), inf.HasSynced) {
		t.Fatal("informer never synced")
	}
	objs, err := Lister(inf).List(labels.Everything())
	if err != nil || len(objs) != 5 {
		t.Fatalf("pods: %d %v, want 5", len(objs), err)
	}
	for _, o := range objs {
		if p, ok := o.(*Pod); !ok || p.ManagedFields != nil || len(p.Containers) != 2 {
			t.Fatalf("cached %T %+v: want a slim *Pod", o, o)
		}
	}
	want := []metav1.ListOptions{
		{FieldSelector: runningOnly, Limit: pageSize},
		{FieldSelector: runningOnly, Limit: pageSize, Continue: "2"},
		{FieldSelector: runningOnly, Limit: pageSize, Continue: "4"},
	}
	if !reflect.DeepEqual(*seen, want) {
		t.Errorf("list requests:\n%+v\nwant\n%+v", *seen, want)
	}
	if rv := inf.LastSyncResourceVersion(); rv != "100" {
		t.Errorf("synced at resourceVersion %q, want the first page's 100", rv)
	}
}

// The reflector gets the whole list already slim (its pager would
// otherwise gather every page of full Pods before the transform), at the
// version it asked for, or an error: never part of a list.
func TestListIsSlimWholeOrAnError(t *testing.T) {
	client, seen := pagedClient(5, "")
	obj, err := listWatch(client).ListWithContext(context.Background(),
		metav1.ListOptions{ResourceVersion: "42", ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, Limit: 2})
	got, ok := obj.(*slimList)
	if err != nil || !ok {
		t.Fatalf("list: %T, %v; want a *slimList", obj, err)
	}
	if len(got.Items) != 5 || got.ResourceVersion != "100" || got.Continue != "" {
		t.Fatalf("list: %d items at %q (continue %q), want 5 at 100 and no continue", len(got.Items), got.ResourceVersion, got.Continue)
	}
	first, next := (*seen)[0], (*seen)[1]
	if first.ResourceVersion != "42" || first.ResourceVersionMatch != metav1.ResourceVersionMatchNotOlderThan {
		t.Errorf("first page asked %+v: want the caller's version kept", first)
	}
	if next.ResourceVersion != "" || next.ResourceVersionMatch != "" || next.Continue != "2" {
		t.Errorf("second page asked %+v: a continued list names no version", next)
	}

	client, _ = pagedClient(5, "4")
	if got, err := listSlim(context.Background(), client, metav1.ListOptions{}); err == nil {
		t.Errorf("a failed last page gave %d pods and no error", len(got.Items))
	}
}
