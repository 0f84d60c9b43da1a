package scrape

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/discovery/targetgroup"
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
