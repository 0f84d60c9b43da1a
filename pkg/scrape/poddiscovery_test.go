package scrape

import (
	"context"
	"log/slog"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	promscrape "github.com/prometheus/prometheus/scrape"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/metrics-gateway/metrics-gateway/pkg/pods"
)

// testPods are pods of every shape pod discovery distinguishes: ports
// named and not, UDP, several per container, containers without ports,
// init containers, container IDs, ready or not or unknown, a controller,
// labels and annotations that need sanitizing, no IP yet, IPv6, phases other than Running.
func testPods() []*corev1.Pod {
	yes := true
	annotated := map[string]string{"prometheus.io/scrape": "true", "prometheus.io/port": "9102", "team.example/owner": "a b"}
	return []*corev1.Pod{
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "api-1", UID: "uid-1",
				Labels:          map[string]string{"app": "api", "app.kubernetes.io/name": "api"},
				Annotations:     annotated,
				OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "api-7c9", Controller: &yes}},
				ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubelet"}},
			},
			Spec: corev1.PodSpec{NodeName: "node-a",
				Containers: []corev1.Container{
					{Name: "app", Image: "api:1", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}, {ContainerPort: 9102, Protocol: corev1.ProtocolTCP}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
					{Name: "sidecar", Image: "envoy:1"},
				},
				InitContainers: []corev1.Container{{Name: "init", Image: "busybox", Ports: []corev1.ContainerPort{{ContainerPort: 1, Protocol: corev1.ProtocolTCP}}}},
			},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", HostIP: "192.168.0.1",
				Conditions:            []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionTrue}},
				ContainerStatuses:     []corev1.ContainerStatus{{Name: "sidecar", ContainerID: "containerd://s"}, {Name: "app", ContainerID: "containerd://a"}},
				InitContainerStatuses: []corev1.ContainerStatus{{Name: "init", ContainerID: "containerd://i"}},
			},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "not-ready", UID: "uid-2",
				Annotations: map[string]string{"prometheus.io/scrape": "true"}},
			Spec: corev1.PodSpec{NodeName: "node-b", Containers: []corev1.Container{{Name: "app", Image: "x", Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}}}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "fd00::5", HostIP: "fd00::1",
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "batch", Name: "no-conditions", UID: "uid-3", Labels: map[string]string{"job-name": "j"}},
			Spec:       corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "c", Image: "y"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.3"},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "pending", UID: "uid-4", Annotations: annotated},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "z"}}},
			Status:     corev1.PodStatus{Phase: corev1.PodPending},
		},
		{
			ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "done", UID: "uid-5", Annotations: annotated},
			Spec:       corev1.PodSpec{NodeName: "node-b", Containers: []corev1.Container{{Name: "c", Image: "z", Ports: []corev1.ContainerPort{{ContainerPort: 9102, Protocol: corev1.ProtocolTCP}}}}},
			Status:     corev1.PodStatus{Phase: corev1.PodSucceeded, PodIP: "10.0.0.5"},
		},
	}
}

// collect runs d until it has sent a group for every source in want, and
// returns the newest group of each source it sent.
func collect(t *testing.T, ctx context.Context, d discovery.Discoverer, want int) map[string]*targetgroup.Group {
	t.Helper()
	ch := make(chan []*targetgroup.Group)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go d.Run(ctx, ch)
	got := map[string]*targetgroup.Group{}
	timeout := time.After(10 * time.Second)
	for len(got) < want {
		select {
		case tgs := <-ch:
			for _, tg := range tgs {
				got[tg.Source] = tg
			}
		case <-timeout:
			t.Fatalf("got %d of %d groups", len(got), want)
		}
	}
	return got
}

func upstreamPodDiscoverer(t *testing.T, ctx context.Context, client *fake.Clientset) discovery.Discoverer {
	t.Helper()
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return client.CoreV1().Pods("").List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return client.CoreV1().Pods("").Watch(ctx, o)
		},
	}, client), &corev1.Pod{}, 0, cache.Indexers{})
	go inf.RunWithContext(ctx)
	events := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "events"}, []string{"role", "event"})
	return kubernetes.NewPod(slog.New(slog.DiscardHandler), inf, nil, nil, nil, nil, false, false, false, events)
}

func sharedPodDiscoverer(t *testing.T, ctx context.Context, client *fake.Clientset, keep func(*pods.Pod) bool) discovery.Discoverer {
	t.Helper()
	inf := pods.NewInformer(client)
	go inf.RunWithContext(ctx)
	d, err := (&PodDiscoveryConfig{Informer: inf, Keep: keep}).NewDiscoverer(discovery.DiscovererOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func newFakeClient(ps []*corev1.Pod) *fake.Clientset {
	objs := make([]runtime.Object, len(ps))
	for i, p := range ps {
		objs[i] = p
	}
	return fake.NewClientset(objs...)
}

// TestPodDiscoveryMatchesPrometheus: on the same pods, the shared-informer
// discovery sends exactly the target groups of Prometheus' own pod
// discovery. (The fake clientset ignores the informer's phase selector, so
// both see every pod.)
func TestPodDiscoveryMatchesPrometheus(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps := testPods()
	want := collect(t, ctx, upstreamPodDiscoverer(t, ctx, newFakeClient(ps)), len(ps))
	got := collect(t, ctx, sharedPodDiscoverer(t, ctx, newFakeClient(ps), nil), len(ps))
	for src, w := range want {
		if g := got[src]; !reflect.DeepEqual(g, w) {
			t.Errorf("group %s:\n got  %+v\n want %+v", src, g, w)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d groups, want %d", len(got), len(want))
	}
}

// podJobTargets relabels groups with the built-in pod job and returns the
// resulting targets' labels, sorted and without duplicates, as a scrape
// pool keeps them.
func podJobTargets(t *testing.T, groups map[string]*targetgroup.Group) []string {
	t.Helper()
	doc, err := PodJobYAML(PodJobOptions{Interval: 15 * time.Second, Timeout: 10 * time.Second, Limits: DefaultLimits()}, Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(slog.New(slog.DiscardHandler), doc)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	lb := labels.NewBuilder(labels.EmptyLabels())
	for _, tg := range groups {
		targets, errs := promscrape.TargetsFromGroup(tg, cfg.ScrapeConfigs[0], nil, lb)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		for _, tgt := range targets {
			if ls := tgt.Labels(lb); !ls.IsEmpty() {
				out = append(out, ls.String())
			}
		}
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// TestPodJobKeepsWhatRelabelingKeeps: with the pod job's pre-filter the
// discovery sends groups only for pods the job may scrape, and relabeling
// those yields exactly the targets relabeling Prometheus' groups for every
// pod yields, before and after pods change and go.
func TestPodJobKeepsWhatRelabelingKeeps(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ps := testPods()
	upClient, ourClient := newFakeClient(ps), newFakeClient(ps)
	up := upstreamPodDiscoverer(t, ctx, upClient)
	ours := sharedPodDiscoverer(t, ctx, ourClient, podJobKeeps)

	upCh, ourCh := make(chan []*targetgroup.Group, 100), make(chan []*targetgroup.Group, 100)
	go up.Run(ctx, upCh)
	go ours.Run(ctx, ourCh)
	upGroups, ourGroups := map[string]*targetgroup.Group{}, map[string]*targetgroup.Group{}
	settle := func() {
		t.Helper()
		deadline := time.After(10 * time.Second)
		quiet := time.NewTimer(500 * time.Millisecond)
		for {
			select {
			case tgs := <-upCh:
				for _, tg := range tgs {
					upGroups[tg.Source] = tg
				}
			case tgs := <-ourCh:
				for _, tg := range tgs {
					ourGroups[tg.Source] = tg
				}
			case <-quiet.C:
				return
			case <-deadline:
				t.Fatal("discovery never settled")
			}
			quiet.Reset(500 * time.Millisecond)
		}
	}
	check := func(step string, wantTargets int) {
		t.Helper()
		settle()
		want, got := podJobTargets(t, upGroups), podJobTargets(t, ourGroups)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: targets\n got  %v\n want %v", step, got, want)
		}
		if len(want) != wantTargets {
			t.Errorf("%s: %d targets, want %d: %v", step, len(want), wantTargets, want)
		}
		nonEmpty := 0
		for _, g := range ourGroups {
			if len(g.Targets) > 0 {
				nonEmpty++
			}
		}
		if nonEmpty > wantTargets {
			t.Errorf("%s: the pre-filtered discovery holds %d groups with targets for %d targets", step, nonEmpty, wantTargets)
		}
	}
	// api-1 (its port annotation makes every target the same one) and
	// not-ready (its one TCP port).
	check("start", 2)

	update := func(f func(p *corev1.Pod)) {
		t.Helper()
		for _, c := range []*fake.Clientset{upClient, ourClient} {
			p, err := c.CoreV1().Pods("web").Get(ctx, "api-1", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			f(p)
			if _, err := c.CoreV1().Pods("web").Update(ctx, p, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	update(func(p *corev1.Pod) { p.Annotations = map[string]string{"prometheus.io/scrape": "false"} })
	check("api-1 opted out", 1)
	update(func(p *corev1.Pod) {
		p.Annotations = map[string]string{"prometheus.io/scrape": "true", "prometheus.io/path": "/m"}
	})
	// Without a port annotation every TCP port of a non-init container:
	// 8080 and 9102, not the UDP one, not the sidecar without ports.
	check("api-1 opted in without a port", 3)
	for _, c := range []*fake.Clientset{upClient, ourClient} {
		if err := c.CoreV1().Pods("web").Delete(ctx, "api-1", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	check("api-1 deleted", 1)
}

func TestPodDiscoveryStandsInOnlyForPlainRolePod(t *testing.T) {
	inf := pods.NewInformer(fake.NewClientset())
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
	}{
		{"  - role: pod\n", true},
		{"  - role: pod\n    namespaces:\n      names: [a, b]\n", true},
		{"  - role: node\n", false},
		{"  - role: pod\n    selectors:\n    - role: pod\n      label: app=x\n", false},
		{"  - role: pod\n    attach_metadata:\n      node: true\n", false},
		{"  - role: pod\n    api_server: https://other:6443\n", false},
		{"  - role: pod\n  - role: pod\n    namespaces:\n      names: [a]\n", false},
	} {
		cfgs, ok := podDiscoveryFor(load(tc.sd), inf, podJobKeeps)
		if ok != tc.want {
			t.Errorf("%q: stands in %v, want %v", tc.sd, ok, tc.want)
		}
		if ok && tc.sd == "  - role: pod\n    namespaces:\n      names: [a, b]\n" {
			if ns := cfgs[0].(*PodDiscoveryConfig).Namespaces; !reflect.DeepEqual(ns, []string{"a", "b"}) {
				t.Errorf("namespaces %v, want [a b]", ns)
			}
		}
	}
	if _, ok := podDiscoveryFor(load("  - role: pod\n"), nil, podJobKeeps); ok {
		t.Error("stands in without an informer")
	}
}

func TestPodJobKeeps(t *testing.T) {
	running := func(annotations map[string]string) *pods.Pod {
		p := &pods.Pod{Phase: corev1.PodRunning}
		p.Annotations = annotations
		return p
	}
	for _, tc := range []struct {
		name string
		pod  *pods.Pod
		want bool
	}{
		{"annotated", running(map[string]string{"prometheus.io/scrape": "true"}), true},
		{"not annotated", running(map[string]string{"prometheus.io/port": "80"}), false},
		{"annotated false", running(map[string]string{"prometheus.io/scrape": "false"}), false},
		{"annotated True (the rule's regex is case-sensitive)", running(map[string]string{"prometheus.io/scrape": "True"}), false},
		{"another spelling that sanitizes the same", running(map[string]string{"prometheus-io/scrape": "true"}), true},
		// Discovery keeps whichever of two such annotations it meets last:
		// both are kept, relabeling decides.
		{"two spellings, one true", running(map[string]string{"prometheus.io/scrape": "false", "prometheus-io/scrape": "true"}), true},
		{"not running", &pods.Pod{Phase: corev1.PodSucceeded, PartialObjectMetadata: metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"prometheus.io/scrape": "true"}}}}, false},
	} {
		if got := podJobKeeps(tc.pod); got != tc.want {
			t.Errorf("%s: keeps %v, want %v", tc.name, got, tc.want)
		}
	}
}
