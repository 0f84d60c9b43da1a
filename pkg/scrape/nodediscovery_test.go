package scrape

import (
	"context"
	"log/slog"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

func testNodes() []*corev1.Node {
	return []*corev1.Node{
		{
			ObjectMeta: metav1.ObjectMeta{Name: "n1", Labels: map[string]string{"zone": "a", "node-role.kubernetes.io/worker": ""},
				Annotations: map[string]string{"volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
			Spec: corev1.NodeSpec{ProviderID: "aws:///i-1"},
			Status: corev1.NodeStatus{
				Addresses: []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "n1"}, {Type: corev1.NodeInternalIP, Address: "10.0.0.1"},
					{Type: corev1.NodeInternalIP, Address: "fd00::1"}, {Type: corev1.NodeExternalIP, Address: "1.2.3.4"}},
				Conditions:      []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}, {Type: "DiskPressure", Status: corev1.ConditionFalse}},
				DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Name: "dns-only"},
			Status: corev1.NodeStatus{
				Addresses:       []corev1.NodeAddress{{Type: corev1.NodeExternalDNS, Address: "n2.example"}},
				DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10255}},
			},
		},
	}
}

func nodeClient(ns []*corev1.Node) *fake.Clientset {
	objs := make([]runtime.Object, len(ns))
	for i, n := range ns {
		objs[i] = n
	}
	return fake.NewClientset(objs...)
}

func upstreamNodeDiscoverer(ctx context.Context, client *fake.Clientset) discovery.Discoverer {
	inf := cache.NewSharedInformer(cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.CoreV1().Nodes().List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return client.CoreV1().Nodes().Watch(ctx, o)
		},
	}, client), &corev1.Node{}, 0)
	go inf.RunWithContext(ctx)
	events := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "events"}, []string{"role", "event"})
	return kubernetes.NewNode(slog.New(slog.DiscardHandler), inf, events)
}

func sharedNodeDiscoverer(t *testing.T, ctx context.Context, client *fake.Clientset, sel labels.Selector) discovery.Discoverer {
	t.Helper()
	f := informers.NewSharedInformerFactory(client, 0)
	inf := f.Core().V1().Nodes().Informer()
	f.Start(ctx.Done())
	d, err := (&NodeDiscoveryConfig{Informer: inf, Selector: sel}).NewDiscoverer(discovery.DiscovererOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestNodeDiscoveryMatchesPrometheus: on the same nodes, the same groups
// as Prometheus' node discovery.
func TestNodeDiscoveryMatchesPrometheus(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := testNodes()
	want := collect(t, ctx, upstreamNodeDiscoverer(ctx, nodeClient(ns)), len(ns))
	got := collect(t, ctx, sharedNodeDiscoverer(t, ctx, nodeClient(ns), nil), len(ns))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("groups:\n got  %+v\n want %+v", got, want)
	}
}

// TestNodeDiscoverySendsChangesOnly: a status heartbeat sends nothing; a
// label change, a node leaving the selector and a deletion do.
func TestNodeDiscoverySendsChangesOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := nodeClient(testNodes())
	d := sharedNodeDiscoverer(t, ctx, client, labels.SelectorFromSet(labels.Set{"zone": "a"}))
	ch := make(chan []*targetgroup.Group, 10)
	go d.Run(ctx, ch)
	quiet := func(what string) {
		t.Helper()
		select {
		case tgs := <-ch:
			t.Errorf("%s: sent %v", what, tgs[0])
		case <-time.After(500 * time.Millisecond):
		}
	}
	if tg := nextGroup(t, ch, "start"); tg.Source != "node/n1" || len(tg.Targets) != 1 {
		t.Fatalf("first group %+v, want n1's (dns-only is not selected)", tg)
	}
	quiet("start")
	updateNode(t, ctx, client, "n1", func(n *corev1.Node) { n.Status.Conditions[0].LastHeartbeatTime = metav1.Now() })
	quiet("heartbeat")
	updateNode(t, ctx, client, "n1", func(n *corev1.Node) { n.Labels["team"] = "x" })
	if tg := nextGroup(t, ch, "label added"); tg.Labels["__meta_kubernetes_node_label_team"] != "x" {
		t.Errorf("after a label change: %+v", tg)
	}
	updateNode(t, ctx, client, "n1", func(n *corev1.Node) { n.Labels["zone"] = "b" })
	if tg := nextGroup(t, ch, "left the selector"); tg.Source != "node/n1" || len(tg.Targets) != 0 {
		t.Errorf("after leaving the selector: %+v, want an empty group", tg)
	}
	updateNode(t, ctx, client, "n1", func(n *corev1.Node) { n.Labels["zone"] = "a" })
	nextGroup(t, ch, "back in the selector")
	if err := client.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if tg := nextGroup(t, ch, "deleted"); tg.Source != "node/n1" || len(tg.Targets) != 0 {
		t.Errorf("after deletion: %+v, want an empty group", tg)
	}
}

// TestNodeGroupUnchanged: an update that moves only what a heartbeat moves
// is unchanged and builds the same group; a change of any field the group
// is built from is not.
func TestNodeGroupUnchanged(t *testing.T) {
	for _, tc := range []struct {
		name      string
		change    func(n *corev1.Node)
		unchanged bool
	}{
		{"heartbeat", func(n *corev1.Node) {
			n.ResourceVersion = "2"
			n.Status.Conditions[0].LastHeartbeatTime = metav1.Unix(2, 0)
			n.Status.Conditions[0].Reason, n.Status.Conditions[0].Message = "KubeletReady", "ready"
			n.Status.NodeInfo.KubeletVersion = "v1.37.2"
		}, true},
		{"name", func(n *corev1.Node) { n.Name = "n9" }, false},
		{"provider ID", func(n *corev1.Node) { n.Spec.ProviderID = "aws:///i-2" }, false},
		{"kubelet port", func(n *corev1.Node) { n.Status.DaemonEndpoints.KubeletEndpoint.Port = 10255 }, false},
		{"label value", func(n *corev1.Node) { n.Labels["zone"] = "b" }, false},
		{"label added", func(n *corev1.Node) { n.Labels["team"] = "x" }, false},
		{"annotation", func(n *corev1.Node) { n.Annotations["a"] = "b" }, false},
		{"address", func(n *corev1.Node) { n.Status.Addresses[1].Address = "10.0.0.9" }, false},
		{"address gone", func(n *corev1.Node) { n.Status.Addresses = n.Status.Addresses[:1] }, false},
		{"condition status", func(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }, false},
		{"condition added", func(n *corev1.Node) {
			n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: "MemoryPressure", Status: corev1.ConditionFalse})
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old := testNodes()[0]
			cur := old.DeepCopy()
			tc.change(cur)
			if got := nodeGroupUnchanged(old, cur); got != tc.unchanged {
				t.Fatalf("unchanged %v, want %v", got, tc.unchanged)
			}
			if same := reflect.DeepEqual(NodeTargetGroup(old), NodeTargetGroup(cur)); same != tc.unchanged {
				t.Errorf("groups equal %v, want %v", same, tc.unchanged)
			}
		})
	}
	if nodeGroupUnchanged(testNodes()[0], &corev1.Pod{}) {
		t.Error("a node and a pod: unchanged")
	}
}

// TestNodeDiscoveryBuildsNothingOnAHeartbeat: a heartbeat does not build
// the node's group again (the queue is FIFO with one worker, so when the
// group of a later update of the other node arrives, the heartbeat has
// been handled).
func TestNodeDiscoveryBuildsNothingOnAHeartbeat(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := nodeClient(testNodes())
	d := sharedNodeDiscoverer(t, ctx, client, nil).(*informerDiscoverer)
	var builds atomic.Int32
	build := d.build
	d.build = func(o any) (*targetgroup.Group, bool) {
		builds.Add(1)
		return build(o)
	}
	ch := make(chan []*targetgroup.Group, 10)
	go d.Run(ctx, ch)
	nextGroup(t, ch, "start")
	nextGroup(t, ch, "start")
	updateNode(t, ctx, client, "n1", func(n *corev1.Node) { n.Status.Conditions[0].LastHeartbeatTime = metav1.Now() })
	updateNode(t, ctx, client, "dns-only", func(n *corev1.Node) { n.Labels = map[string]string{"team": "x"} })
	if tg := nextGroup(t, ch, "label added"); tg.Source != "node/dns-only" {
		t.Fatalf("sent %+v, want dns-only's group", tg)
	}
	if n := builds.Load(); n != 3 {
		t.Errorf("%d groups built, want 3 (two at the start, one for the label)", n)
	}
}

// nextGroup is the first group of the next update a discoverer sends on ch.
func nextGroup(t *testing.T, ch <-chan []*targetgroup.Group, what string) *targetgroup.Group {
	t.Helper()
	select {
	case tgs := <-ch:
		return tgs[0]
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: nothing sent", what)
		return nil
	}
}

// updateNode gets the node called name, changes it with f and updates it.
func updateNode(t *testing.T, ctx context.Context, client *fake.Clientset, name string, f func(n *corev1.Node)) {
	t.Helper()
	n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f(n)
	if _, err := client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestNodeDiscoveryStandsInOnlyForPlainRoleNode(t *testing.T) {
	inf := informers.NewSharedInformerFactory(fake.NewClientset(), 0).Core().V1().Nodes().Informer()
	load := func(sd string) discovery.Configs {
		cfg, err := LoadConfig(slog.New(slog.DiscardHandler), "scrape_configs:\n- job_name: x\n  kubernetes_sd_configs:\n"+sd)
		if err != nil {
			t.Fatal(err)
		}
		return cfg.ScrapeConfigs[0].ServiceDiscoveryConfigs
	}
	for _, tc := range []struct {
		sd   string
		want bool
		sel  string
	}{
		{"  - role: node\n", true, ""},
		{"  - role: node\n    selectors:\n    - role: node\n      label: zone=a,tier!=x\n", true, "tier!=x,zone=a"},
		{"  - role: node\n    selectors:\n    - role: node\n      field: metadata.name=n1\n", false, ""},
		{"  - role: pod\n", false, ""},
		{"  - role: node\n    api_server: https://other:6443\n", false, ""},
	} {
		cfgs, ok := nodeDiscoveryFor(load(tc.sd), inf)
		if ok != tc.want {
			t.Errorf("%q: stands in %v, want %v", tc.sd, ok, tc.want)
			continue
		}
		if ok {
			sel := cfgs[0].(*NodeDiscoveryConfig).Selector
			if (sel == nil) != (tc.sel == "") || (sel != nil && sel.String() != tc.sel) {
				t.Errorf("%q: selector %v, want %q", tc.sd, sel, tc.sel)
			}
		}
	}
}

// TestPodDiscoverySendsChangesOnly: a pod update that changes none of its
// target labels (a restart count) sends nothing.
func TestPodDiscoverySendsChangesOnly(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := newFakeClient(testPods()[:1])
	d := sharedPodDiscoverer(t, ctx, client, nil)
	ch := make(chan []*targetgroup.Group, 10)
	go d.Run(ctx, ch)
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no first group")
	}
	p, err := client.CoreV1().Pods("web").Get(ctx, "api-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.ContainerStatuses[0].RestartCount = 3
	if _, err := client.CoreV1().Pods("web").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case tgs := <-ch:
		t.Errorf("a restart count sent %+v", tgs[0])
	case <-time.After(500 * time.Millisecond):
	}
	p.Labels["version"] = "2"
	if _, err := client.CoreV1().Pods("web").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case tgs := <-ch:
		if tgs[0].Labels["__meta_kubernetes_pod_label_version"] != "2" {
			t.Errorf("after a label change: %+v", tgs[0])
		}
	case <-time.After(5 * time.Second):
		t.Error("a label change sent nothing")
	}
}
