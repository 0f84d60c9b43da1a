package scrape

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"github.com/prometheus/prometheus/model/labels"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// chanDiscoverer sends what the test puts on in.
type chanDiscoverer struct{ in chan []*targetgroup.Group }

func (d chanDiscoverer) Run(ctx context.Context, ch chan<- []*targetgroup.Group) {
	for {
		select {
		case <-ctx.Done():
			return
		case tgs := <-d.in:
			select {
			case ch <- tgs:
			case <-ctx.Done():
				return
			}
		}
	}
}

func group(source string, addrs ...string) *targetgroup.Group {
	tg := &targetgroup.Group{Source: source}
	for _, a := range addrs {
		tg.Targets = append(tg.Targets, model.LabelSet{model.AddressLabel: model.LabelValue(a)})
	}
	return tg
}

// addresses are the targets of each job in a set, sorted.
func addresses(sets map[string][]*targetgroup.Group) map[string][]string {
	out := map[string][]string{}
	for job, tgs := range sets {
		out[job] = []string{}
		for _, tg := range tgs {
			for _, t := range tg.Targets {
				out[job] = append(out[job], string(t[model.AddressLabel]))
			}
		}
		sort.Strings(out[job])
	}
	return out
}

func TestTargetSets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pods := chanDiscoverer{make(chan []*targetgroup.Group)}
		s := &targetSets{
			jobs: map[string][]discovery.Discoverer{
				"pods":   {pods},
				"self":   {staticDiscoverer(t, group("0", "self:1"))},
				"nobody": {},
			},
			out: make(chan map[string][]*targetgroup.Group),
		}
		upstream := make(chan map[string][]*targetgroup.Group)
		done := make(chan struct{})
		go func() {
			s.run(ctx, upstream)
			close(done)
		}()
		start := time.Now()
		recv := func() (map[string][]string, time.Duration) {
			t.Helper()
			select {
			case sets := <-s.out:
				return addresses(sets), time.Since(start)
			case <-time.After(time.Hour):
				t.Fatal("no target sets sent in an hour")
				return nil, 0
			}
		}
		quiet := func(d time.Duration) {
			t.Helper()
			select {
			case sets := <-s.out:
				t.Fatalf("sent %v with nothing new", addresses(sets))
			case <-time.After(d):
			}
		}
		want := func(got map[string][]string, want map[string][]string) {
			t.Helper()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("sent %v, want %v", got, want)
			}
		}

		// Every job at the start, the static one's target in it.
		got, at := recv()
		want(got, map[string][]string{"nobody": {}, "pods": {}, "self": {"self:1"}})
		if at != firstSendDelay {
			t.Errorf("first set sent after %v, want %v", at, firstSendDelay)
		}
		// Nothing new: nothing sent, for as long as it stays so.
		quiet(time.Hour)

		// After a quiet second, an update goes after firstSendDelay.
		start = time.Now()
		pods.in <- []*targetgroup.Group{group("pod/a", "a:1"), group("pod/b", "b:1", "b:2")}
		got, at = recv()
		want(got, map[string][]string{"nobody": {}, "pods": {"a:1", "b:1", "b:2"}, "self": {"self:1"}})
		if at != firstSendDelay {
			t.Errorf("update sent after %v, want %v", at, firstSendDelay)
		}

		// A burst is paced: one set per sendEvery, the last one complete.
		burst := make(chan struct{})
		go func() {
			for i := range 300 {
				pods.in <- []*targetgroup.Group{group(fmt.Sprintf("pod/p%03d", i), fmt.Sprintf("p%03d:1", i))}
				time.Sleep(10 * time.Millisecond)
			}
			close(burst)
		}()
		sends := 0
	collect:
		for {
			select {
			case sets := <-s.out:
				sends++
				got = addresses(sets)
			case <-burst:
				burst = nil
			case <-time.After(2 * sendEvery):
				if burst == nil {
					break collect
				}
			}
		}
		if len(got["pods"]) != 303 {
			t.Errorf("after the burst, %d pod targets sent, want 303", len(got["pods"]))
		}
		// 300 updates over 3 s: a send per update after firstSendDelay
		// would be some 30.
		if sends > 5 {
			t.Errorf("a burst of 300 updates over 3 s made %d sends, want one per %v", sends, sendEvery)
		}

		// An empty group removes its source's targets; the upstream
		// manager's jobs are merged in, replaced whole by its next set.
		time.Sleep(2 * sendEvery)
		start = time.Now()
		pods.in <- []*targetgroup.Group{group("pod/b"), nil}
		upstream <- map[string][]*targetgroup.Group{"user": {group("0", "u:1")}}
		got, _ = recv()
		if len(got["pods"]) != 301 || fmt.Sprint(got["user"]) != "[u:1]" || fmt.Sprint(got["self"]) != "[self:1]" {
			t.Errorf("after removing pod/b and a user job: %d pod targets (want 301), user %v, self %v", len(got["pods"]), got["user"], got["self"])
		}
		upstream <- map[string][]*targetgroup.Group{"user": {}}
		got, _ = recv()
		if len(got["user"]) != 0 {
			t.Errorf("user job still has %v after upstream sent it empty", got["user"])
		}
		quiet(time.Hour)

		cancel()
		<-done
	})
}

func staticDiscoverer(t *testing.T, tgs ...*targetgroup.Group) discovery.Discoverer {
	d, err := discovery.StaticConfig(tgs).NewDiscoverer(discovery.DiscovererOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestOwnDiscovery(t *testing.T) {
	own, others := ownDiscovery(map[string]discovery.Configs{
		"pods":    {&PodDiscoveryConfig{}},
		"kubelet": {&NodeDiscoveryConfig{}},
		"self":    {discovery.StaticConfig{group("0", "self:1")}},
		"none":    {},
		"user":    {&kubernetes.SDConfig{Role: kubernetes.RolePod}},
		"mixed":   {discovery.StaticConfig{}, &kubernetes.SDConfig{Role: kubernetes.RoleNode}},
	})
	var gotOwn, gotOthers []string
	for j := range own {
		gotOwn = append(gotOwn, j)
	}
	for j := range others {
		gotOthers = append(gotOthers, j)
	}
	sort.Strings(gotOwn)
	sort.Strings(gotOthers)
	if fmt.Sprint(gotOwn) != "[kubelet none pods self]" || fmt.Sprint(gotOthers) != "[mixed user]" {
		t.Errorf("own %v, others %v", gotOwn, gotOthers)
	}
}

// TestUsersKubernetesDiscovery runs a user's job with kubernetes_sd_configs
// (an API server of the test's) beside a static job: the first through
// Prometheus' discovery manager, the second through targetSets, both
// reaching the scrape manager. Without a user's job no discovery manager
// runs.
func TestUsersKubernetesDiscovery(t *testing.T) {
	node := corev1.Node{
		TypeMeta:   metav1.TypeMeta{Kind: "Node", APIVersion: "v1"},
		ObjectMeta: metav1.ObjectMeta{Name: "n1", ResourceVersion: "1"},
		Status: corev1.NodeStatus{
			Addresses:       []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 1}},
		},
	}
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/nodes" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		q := r.URL.Query()
		switch {
		case q.Get("sendInitialEvents") == "true":
			// No watch list here: client-go falls back to list and watch.
			w.WriteHeader(http.StatusBadRequest)
			_ = json.NewEncoder(w).Encode(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}, Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest})
		case q.Get("watch") == "true" || q.Get("watch") == "1":
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		default:
			_ = json.NewEncoder(w).Encode(corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "NodeList", APIVersion: "v1"}, ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: []corev1.Node{node}})
		}
	}))
	t.Cleanup(func() {
		api.CloseClientConnections()
		api.Close()
	})
	logger := slog.New(slog.DiscardHandler)
	static := "scrape_configs:\n- job_name: static\n  static_configs: [{targets: ['127.0.0.1:2']}]\n"
	user := "scrape_configs:\n- job_name: user-nodes\n  kubernetes_sd_configs:\n  - role: node\n    api_server: " + api.URL + "\n"

	cfg, err := LoadConfig(logger, static)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(cfg, &nopAppendable{}, ManagerOptions{}, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if m.discovery != nil {
		t.Error("a discovery manager for static targets alone")
	}
	m.Stop()

	cfg, err = LoadConfig(logger, static, user)
	if err != nil {
		t.Fatal(err)
	}
	m, err = NewManager(cfg, &nopAppendable{}, ManagerOptions{}, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if m.discovery == nil {
		t.Fatal("no discovery manager for a user's kubernetes_sd_configs job")
	}
	ctx, cancel := context.WithCancel(t.Context())
	go func() { _ = m.Run(ctx) }()
	t.Cleanup(func() { cancel(); m.Stop() })
	var got map[string][]string
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		got = map[string][]string{}
		for job, ts := range m.Targets().TargetsActive() {
			for _, tg := range ts {
				got[job] = append(got[job], tg.DiscoveredLabels(labels.NewBuilder(labels.EmptyLabels())).Get(model.AddressLabel))
			}
		}
		if len(got["static"]) == 1 && len(got["user-nodes"]) == 1 {
			break
		}
	}
	if fmt.Sprint(got["static"]) != "[127.0.0.1:2]" || fmt.Sprint(got["user-nodes"]) != "[127.0.0.1:1]" {
		t.Fatalf("targets %v, want static [127.0.0.1:2] and user-nodes [127.0.0.1:1]", got)
	}
}
