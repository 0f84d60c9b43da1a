package resource

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"
	"unique"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	promstorage "github.com/prometheus/prometheus/storage"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// testClock is a clock the test moves.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// kubeletWorld writes what kubelets would be scraped for, round by round:
// pods that restart, start fresh, are deleted and come back on another
// node, whose counters fall, whose containers vanish, whose timestamps
// repeat. Every value comes from a seeded generator.
type kubeletWorld struct {
	rng   *rand.Rand
	t0    time.Time
	res   time.Duration
	pods  map[string]*simPod
	nodes map[string]*simNode
	// lastT is each series' newest kubelet timestamp, so that timestamps
	// only move forward (or repeat), as a kubelet's do.
	lastT map[string]int64
}

type simPod struct {
	ns, name, node string
	containers     []*simContainer
	gone           bool
}

type simContainer struct {
	name       string
	cpu, mem   float64
	start      float64 // unix seconds
	gone, zero bool
}

type simNode struct {
	cpu, mem float64
	gone     bool
}

var staleNaN = math.Float64frombits(value.StaleNaN)

func (w *kubeletWorld) ts(key string, scrapeAt int64, repeat bool) int64 {
	prev, ok := w.lastT[key]
	t := scrapeAt - int64(w.rng.IntN(8000)) // the kubelet's stats lag the scrape
	switch {
	case ok && repeat:
		t = prev
	case ok && t <= prev:
		t = prev + 1
	}
	w.lastT[key] = t
	return t
}

// round returns the samples of the scrape at scrapeAt, applying events.
func (w *kubeletWorld) round(i int, scrapeAt int64) []sample {
	w.events(i, scrapeAt)
	var out []sample
	for _, name := range sortedKeys(w.nodes) {
		n := w.nodes[name]
		l := func(metric string) []string { return []string{"__name__", metric, "node", name, "instance", name} }
		if n.gone {
			out = append(out, sample{l(scrape.NodeCPUMetric), scrapeAt, staleNaN}, sample{l(scrape.NodeMemoryMetric), scrapeAt, staleNaN})
			delete(w.nodes, name)
			continue
		}
		n.cpu += w.rng.Float64() * 3
		t := w.ts("node/"+name, scrapeAt, i%11 == 7)
		out = append(out, sample{l(scrape.NodeCPUMetric), t, n.cpu}, sample{l(scrape.NodeMemoryMetric), t, n.mem})
	}
	for _, key := range sortedKeys(w.pods) {
		p := w.pods[key]
		for _, c := range p.containers {
			l := func(metric string) []string {
				return []string{"__name__", metric, "namespace", p.ns, "pod", p.name, "container", c.name, "node", p.node, "instance", p.node}
			}
			if p.gone || c.gone {
				for _, m := range []string{scrape.ContainerCPUMetric, scrape.ContainerMemoryMetric, scrape.ContainerStartTimeMetric} {
					out = append(out, sample{l(m), scrapeAt, staleNaN})
				}
				continue
			}
			c.cpu += w.rng.Float64() * 0.5
			if !c.zero {
				c.mem = float64(1 + w.rng.IntN(1<<30))
			} else {
				c.mem = 0
			}
			t := w.ts(key+"/"+c.name+"/"+p.node, scrapeAt, i%13 == 5)
			out = append(out,
				sample{l(scrape.ContainerCPUMetric), t, c.cpu},
				sample{l(scrape.ContainerMemoryMetric), t, c.mem},
				// The kubelet sends the start time without a timestamp.
				sample{l(scrape.ContainerStartTimeMetric), scrapeAt, c.start})
		}
		if p.gone {
			delete(w.pods, key)
		} else {
			p.containers = deleteGone(p.containers)
		}
	}
	return out
}

func deleteGone(cs []*simContainer) []*simContainer {
	out := cs[:0]
	for _, c := range cs {
		if !c.gone {
			out = append(out, c)
		}
	}
	return out
}

func (w *kubeletWorld) addPod(ns, name, node string, start float64, containers ...string) *simPod {
	p := &simPod{ns: ns, name: name, node: node}
	for _, c := range containers {
		p.containers = append(p.containers, &simContainer{name: c, cpu: w.rng.Float64() * 100, start: start})
	}
	w.pods[ns+"/"+name+"@"+node] = p
	return p
}

// events is the story of the fixture, by round.
func (w *kubeletWorld) events(i int, scrapeAt int64) {
	at := float64(scrapeAt) / 1000
	pod := func(ns, name string) *simPod {
		for _, p := range w.pods {
			if p.ns == ns && p.name == name && !p.gone {
				return p
			}
		}
		panic(fmt.Sprintf("no pod %s/%s", ns, name))
	}
	switch i {
	case 0:
		for n := range 3 {
			w.nodes[fmt.Sprintf("node-%d", n)] = &simNode{cpu: 1000 * float64(n+1), mem: 4e9}
		}
		for k := range 12 {
			w.addPod(fmt.Sprintf("ns-%d", k%3), fmt.Sprintf("steady-%d", k), fmt.Sprintf("node-%d", k%3), at-86400, "app", "sidecar")
		}
		w.addPod("ns-0", "restarts", "node-0", at-3600, "app")
		w.addPod("ns-0", "resets", "node-1", at-3600, "app")
		w.addPod("ns-1", "deleted", "node-1", at-3600, "app")
		w.addPod("ns-1", "moves", "node-2", at-3600, "app")
		w.addPod("ns-2", "loses-sidecar", "node-0", at-3600, "app", "sidecar")
		w.addPod("ns-2", "zero-memory", "node-2", at-3600, "app")
	case 4:
		// Fresh containers: one old enough for metrics-server's fresh rule
		// by its first sample, one too young.
		w.addPod("ns-0", "fresh-11s", "node-0", at-11, "app")
		w.addPod("ns-0", "fresh-3s", "node-1", at-3, "app")
	case 6:
		// A restart: a new start time and the counter from zero.
		c := pod("ns-0", "restarts").containers[0]
		c.start, c.cpu = at-4, 0.01
	case 9:
		// Restarted again, 12s before the scrape: the fresh rule applies.
		c := pod("ns-0", "restarts").containers[0]
		c.start, c.cpu = at-12, 0.02
	case 8:
		// The counter falls with the same start time: metrics-server skips it.
		pod("ns-0", "resets").containers[0].cpu = 0.5
		w.nodes["node-0"].cpu = 10
	case 10:
		pod("ns-1", "deleted").gone = true
		// The same pod scheduled again on another node while the old
		// kubelet still reports it: two series per metric for a while.
		w.addPod("ns-1", "moves", "node-0", at-20, "app")
	case 13:
		for _, p := range w.pods {
			if p.name == "moves" && p.node == "node-2" {
				p.gone = true
			}
		}
	case 14:
		pod("ns-2", "loses-sidecar").containers[1].gone = true
	case 16:
		pod("ns-2", "zero-memory").containers[0].zero = true
		w.nodes["node-2"].gone = true
	case 18:
		// Deleted and created again under the same name.
		w.addPod("ns-1", "deleted", "node-2", at-30, "app")
	}
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }

// appendLikeScrape appends as a scrape loop does: a sample the TSDB
// refuses (a repeated timestamp) is skipped, the rest committed.
func appendLikeScrape(tb testing.TB, s *storage.Storage, samples []sample) {
	tb.Helper()
	app := s.Appendable().AppenderV2(context.Background())
	for _, x := range samples {
		ls := labels.FromStrings(append([]string{"job", scrape.KubeletJobName}, x.lbls...)...)
		_, _ = app.Append(0, ls, 0, x.t, x.v, nil, nil, promstorage.AOptions{})
	}
	if err := app.Commit(); err != nil {
		tb.Fatal(err)
	}
}

type getters struct {
	tail, promql *Getter
	evals        *countingQuerier
}

func newGetters(tb testing.TB, s *storage.Storage, clock *testClock) getters {
	tails, err := NewTails(s, clock.Now)
	if err != nil {
		tb.Fatal(err)
	}
	q := &countingQuerier{Querier: s}
	o := GetterOptions{Querier: q, Tails: tails, Resolution: 15 * time.Second, Timeout: 10 * time.Second, Clock: clock}
	withTail := NewGetter(o)
	o.Querier, o.Tails = s, Tails{}
	return getters{tail: withTail, promql: NewGetter(o), evals: q}
}

// TestTailAgreesWithPromQL replays the fixture second by second, through a
// storage restart, and asks both paths for every pod and node there ever
// was, at every second: the answers must be equal, and the tail must have
// answered every one of them itself.
func TestTailAgreesWithPromQL(t *testing.T) {
	dir := t.TempDir()
	open := func() *storage.Storage {
		s, err := storage.Open(storage.Options{Path: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	t0 := time.UnixMilli(1_790_000_000_000)
	clock := &testClock{t: t0}
	s := open()
	g := newGetters(t, s, clock)
	w := &kubeletWorld{rng: rand.New(rand.NewPCG(13, 1)), t0: t0, res: 15 * time.Second,
		pods: map[string]*simPod{}, nodes: map[string]*simNode{}, lastT: map[string]int64{}}

	podSet := map[string]*metav1.PartialObjectMetadata{}
	nodeSet := map[string]*corev1.Node{}
	const rounds, reopenAt = 24, 12
	end := t0.Add(rounds*15*time.Second + 12*time.Minute)
	compared, answered := 0, 0
	seen := newCoverage()
	for now, next := t0, 0; !now.After(end); now = now.Add(time.Second) {
		clock.set(now)
		if next < rounds && !now.Before(t0.Add(time.Duration(next)*15*time.Second)) {
			if next == reopenAt {
				// A restart: the WAL is replayed and the tails are seeded.
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
				s = open()
				g = newGetters(t, s, clock)
			}
			appendLikeScrape(t, s, w.round(next, now.UnixMilli()))
			for _, p := range w.pods {
				podSet[p.ns+"/"+p.name] = &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: p.ns, Name: p.name, Labels: map[string]string{"app": p.name}}}
			}
			for name := range w.nodes {
				nodeSet[name] = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
			}
			next++
		}
		var pods []*metav1.PartialObjectMetadata
		for _, k := range sortedKeys(podSet) {
			pods = append(pods, podSet[k])
		}
		var nodes []*corev1.Node
		for _, k := range sortedKeys(nodeSet) {
			nodes = append(nodes, nodeSet[k])
		}
		before := g.evals.n.Load()
		fromTail, err := g.tail.GetPodMetrics(pods...)
		if err != nil {
			t.Fatal(err)
		}
		fromPromQL, err := g.promql.GetPodMetrics(pods...)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fromTail, fromPromQL) {
			t.Fatalf("pods at t0+%v:\ntail   %+v\npromql %+v", now.Sub(t0), fromTail, fromPromQL)
		}
		nodesTail, err := g.tail.GetNodeMetrics(nodes...)
		if err != nil {
			t.Fatal(err)
		}
		nodesPromQL, err := g.promql.GetNodeMetrics(nodes...)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(nodesTail, nodesPromQL) {
			t.Fatalf("nodes at t0+%v:\ntail   %+v\npromql %+v", now.Sub(t0), nodesTail, nodesPromQL)
		}
		compared++
		if g.evals.n.Load() == before {
			answered++
		}
		seen.note(fromTail, nodesTail)
	}
	if answered != compared {
		t.Errorf("the tail answered %d of %d requests; the rest went to PromQL", answered, compared)
	}
	seen.check(t)
	if s.Close() != nil {
		t.Error("close")
	}
}

// coverage records which of the fixture's cases the answers went through,
// so that the comparison cannot pass on answers that are all empty.
type coverage map[string]int

func newCoverage() coverage { return coverage{} }

func (c coverage) note(pods []metrics.PodMetrics, nodes []metrics.NodeMetrics) {
	byName := map[string]metrics.PodMetrics{}
	for _, p := range pods {
		byName[p.Namespace+"/"+p.Name] = p
		c["pod answered"]++
		if p.Window.Duration < 15*time.Second {
			c["measured from a fresh start time"]++
		}
	}
	if _, ok := byName["ns-0/steady-0"]; ok {
		if _, ok := byName["ns-0/restarts"]; !ok {
			c["restarted pod left out"]++
		}
		if _, ok := byName["ns-0/resets"]; !ok {
			c["fallen counter skipped"]++
		}
		if p, ok := byName["ns-2/loses-sidecar"]; ok && len(p.Containers) == 1 {
			c["vanished container dropped"]++
		}
		if _, ok := byName["ns-1/deleted"]; !ok {
			c["deleted pod gone"]++
		}
	}
	if p, ok := byName["ns-1/deleted"]; ok && p.Window.Duration > 0 {
		c["pod answered"]++
	}
	for _, n := range nodes {
		c["node answered"]++
		_ = n
	}
}

func (c coverage) check(t *testing.T) {
	t.Helper()
	for _, want := range []string{"pod answered", "node answered", "measured from a fresh start time",
		"restarted pod left out", "fallen counter skipped", "vanished container dropped", "deleted pod gone"} {
		if c[want] == 0 {
			t.Errorf("no answer showed %q: the fixture no longer covers it (%v)", want, c)
		}
	}
}

// TestSeriesInfoShared: series of the same metric and container share one
// seriesInfo, which does not keep the labels it was taken from.
func TestSeriesInfoShared(t *testing.T) {
	cpu := func(ns, pod, container string) any {
		return seriesInfoOf(labels.FromStrings(labels.MetricName, scrape.ContainerCPUMetric, "namespace", ns, "pod", pod, containerLabel, container))
	}
	a, b := cpu("ns-1", "web-1", "app"), cpu("ns-2", "web-2", "app")
	if a != b {
		t.Errorf("two pods' app containers: %v and %v, want one handle", a, b)
	}
	if a == cpu("ns-1", "web-1", "sidecar") {
		t.Error("two containers share a handle")
	}
	mem := seriesInfoOf(labels.FromStrings(labels.MetricName, scrape.ContainerMemoryMetric, "namespace", "ns-1", "pod", "web-1", containerLabel, "app"))
	for _, c := range []struct {
		info any
		want seriesInfo
	}{
		{a, seriesInfo{metric: scrape.ContainerCPUMetric, container: "app", last: 2}},
		{mem, seriesInfo{metric: scrape.ContainerMemoryMetric, container: "app", last: 1}},
		{seriesInfoOf(labels.FromStrings(labels.MetricName, scrape.NodeCPUMetric, "node", "n-1")), seriesInfo{metric: scrape.NodeCPUMetric, last: 2}},
	} {
		if got := c.info.(unique.Handle[seriesInfo]).Value(); got != c.want {
			t.Errorf("got %+v, want %+v", got, c.want)
		}
	}
}
