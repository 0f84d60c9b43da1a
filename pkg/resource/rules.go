package resource

import (
	"context"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/prometheus/promql"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
	"k8s.io/metrics/pkg/apis/metrics"
	"sigs.k8s.io/metrics-server/pkg/api"

	"github.com/metrics-gateway/metrics-gateway/pkg/rules"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// rulesParallelism bounds the evaluations one request runs at once. A
// cluster-wide list asks two per namespace, and the storage's own limit on
// concurrent evaluations is shared with every other API.
const rulesParallelism = 4

// RulesGetter answers metrics-server's MetricsGetter with the cpu and memory
// queries of a prometheus-adapter config's resourceRules, the way the
// adapter's resource provider does: per namespace one instant query per
// resource for the requested pods, one per resource for all requested nodes,
// results matched back by the rules' pod, node and container labels, and
// every answer reporting the configured window. It is safe for concurrent
// use; returned slices belong to the caller.
type RulesGetter struct {
	q       storage.Querier
	res     [2]ruleResource // cpu, then memory
	window  time.Duration
	timeout time.Duration
	clock   Clock
}

var _ api.MetricsGetter = (*RulesGetter)(nil)

// ruleResource is one resource's compiled rule and how its values become
// quantities.
type ruleResource struct {
	name     corev1.ResourceName
	q        *rules.ResourceQuery
	quantity func(float64) (resource.Quantity, bool)
}

// NewRulesGetter returns a RulesGetter for compiled resource rules (the CPU,
// Memory and Window of rules.Rules). cpu and mem must not be nil: Compile
// leaves them nil when the config has no resourceRules, and then there is
// nothing for this getter to answer with. window is reported as the window
// of every answer, as the adapter does; it should match the range the
// queries use. timeout bounds each request, all its evaluations together. A
// nil clock is the wall clock.
func NewRulesGetter(q storage.Querier, cpu, mem *rules.ResourceQuery, window, timeout time.Duration, clock Clock) *RulesGetter {
	if clock == nil {
		clock = realClock{}
	}
	return &RulesGetter{
		q: q,
		res: [2]ruleResource{
			{corev1.ResourceCPU, cpu, cpuQuantity},
			{corev1.ResourceMemory, mem, memoryQuantity},
		},
		window:  window,
		timeout: timeout,
		clock:   clock,
	}
}

// reading is one resource's value for a container or node, and the time of
// the evaluation that produced it.
type reading struct {
	q resource.Quantity
	t int64 // milliseconds since the epoch
}

// GetPodMetrics implements api.PodMetricsGetter. Pods come back in request
// order; a pod is left out unless every container the rules report for it
// has both cpu and memory. The first failed evaluation fails the request.
func (g *RulesGetter) GetPodMetrics(pods ...*metav1.PartialObjectMetadata) ([]metrics.PodMetrics, error) {
	out := make([]metrics.PodMetrics, 0, len(pods))
	if len(pods) == 0 {
		return out, nil
	}
	var namespaces []string
	nsIndex := map[string]int{}
	var names [][]string
	seen := make(map[[2]string]bool, len(pods))
	for _, p := range pods {
		if key := [2]string{p.Namespace, p.Name}; !seen[key] {
			seen[key] = true
			i, ok := nsIndex[p.Namespace]
			if !ok {
				i = len(namespaces)
				nsIndex[p.Namespace] = i
				namespaces = append(namespaces, p.Namespace)
				names = append(names, nil)
			}
			names[i] = append(names[i], p.Name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()
	now := g.clock.Now()
	// found[2*i+r] holds resource r of namespace i, by pod then container.
	found := make([]map[string]map[string]reading, 2*len(namespaces))
	err := forEach(ctx, len(found), func(ctx context.Context, i int) error {
		ns, res := namespaces[i/2], g.res[i%2]
		var err error
		if found[i], err = g.containerReadings(ctx, now, res, ns, names[i/2]); err != nil {
			return fmt.Errorf("query %s of pods in namespace %s: %w", res.name, ns, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	created := metav1.NewTime(now)
	for _, p := range pods {
		i := nsIndex[p.Namespace]
		containers, ts, ok := joinContainers(found[2*i][p.Name], found[2*i+1][p.Name])
		if !ok {
			klog.V(4).InfoS("Skipping pod: resource rules give no cpu and memory for every container", "pod", klog.KObj(p))
			continue
		}
		out = append(out, metrics.PodMetrics{
			ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels, CreationTimestamp: created},
			Timestamp:  metav1.NewTime(time.UnixMilli(ts)),
			Window:     metav1.Duration{Duration: g.window},
			Containers: containers,
		})
	}
	return out, nil
}

// joinContainers pairs a pod's cpu and memory by container, sorted by name,
// with the earliest reading's time. It fails unless both resources name the
// same containers. The adapter answers a pod as long as it has any cpu and
// any memory, filling a container's missing resource with zero; we leave
// the pod out instead, as metrics-server does, because an autoscaler reads a
// made-up zero as an idle container.
func joinContainers(cpu, mem map[string]reading) ([]metrics.ContainerMetrics, int64, bool) {
	if len(cpu) == 0 || len(cpu) != len(mem) {
		return nil, 0, false
	}
	out := make([]metrics.ContainerMetrics, 0, len(cpu))
	ts := int64(math.MaxInt64)
	for name, c := range cpu {
		m, ok := mem[name]
		if !ok {
			return nil, 0, false
		}
		out = append(out, metrics.ContainerMetrics{Name: name, Usage: corev1.ResourceList{
			corev1.ResourceCPU:    c.q,
			corev1.ResourceMemory: m.q,
		}})
		ts = min(ts, c.t, m.t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, ts, true
}

// GetNodeMetrics implements api.NodeMetricsGetter with one evaluation per
// resource for all nodes. A node is left out unless it has both.
func (g *RulesGetter) GetNodeMetrics(nodes ...*corev1.Node) ([]metrics.NodeMetrics, error) {
	out := make([]metrics.NodeMetrics, 0, len(nodes))
	if len(nodes) == 0 {
		return out, nil
	}
	names := make([]string, 0, len(nodes))
	seen := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		if !seen[n.Name] {
			seen[n.Name] = true
			names = append(names, n.Name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()
	now := g.clock.Now()
	var found [2]map[string]reading
	err := forEach(ctx, len(found), func(ctx context.Context, i int) error {
		var err error
		if found[i], err = g.nodeReadings(ctx, now, g.res[i], names); err != nil {
			return fmt.Errorf("query %s of nodes: %w", g.res[i].name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	created := metav1.NewTime(now)
	for _, n := range nodes {
		cpu, okCPU := found[0][n.Name]
		mem, okMem := found[1][n.Name]
		if !okCPU || !okMem {
			klog.V(4).InfoS("Skipping node: resource rules give no cpu or no memory", "node", klog.KObj(n))
			continue
		}
		out = append(out, metrics.NodeMetrics{
			ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, CreationTimestamp: created},
			Timestamp:  metav1.NewTime(time.UnixMilli(min(cpu.t, mem.t))),
			Window:     metav1.Duration{Duration: g.window},
			Usage:      corev1.ResourceList{corev1.ResourceCPU: cpu.q, corev1.ResourceMemory: mem.q},
		})
	}
	return out, nil
}

// containerReadings evaluates res's container query for pods of ns and
// returns the usable values by pod, then container. A sample with no pod or
// no container label is a pod-level total, not a container's, and is
// dropped; so is one whose value is not a usage.
func (g *RulesGetter) containerReadings(ctx context.Context, now time.Time, res ruleResource, ns string, pods []string) (map[string]map[string]reading, error) {
	expr, err := res.q.ContainerQuery(ns, pods...)
	if err != nil {
		return nil, err
	}
	podLabel, err := res.q.PodLabel()
	if err != nil {
		return nil, err
	}
	ctrLabel := res.q.ContainerLabel()
	vec, err := g.eval(ctx, expr, now)
	if err != nil {
		return nil, err
	}
	out := make(map[string]map[string]reading, len(pods))
	for _, s := range vec {
		pod, ctr := s.Metric.Get(podLabel), s.Metric.Get(ctrLabel)
		r, ok := toReading(s, res)
		if pod == "" || ctr == "" || !ok {
			continue
		}
		if out[pod] == nil {
			out[pod] = map[string]reading{}
		}
		out[pod][ctr] = r
	}
	return out, nil
}

// nodeReadings evaluates res's node query for nodes and returns the usable
// values by node; of several samples for one node the first is kept, as in
// the adapter.
func (g *RulesGetter) nodeReadings(ctx context.Context, now time.Time, res ruleResource, nodes []string) (map[string]reading, error) {
	expr, err := res.q.NodeQuery(nodes...)
	if err != nil {
		return nil, err
	}
	nodeLabel, err := res.q.NodeLabel()
	if err != nil {
		return nil, err
	}
	vec, err := g.eval(ctx, expr, now)
	if err != nil {
		return nil, err
	}
	out := make(map[string]reading, len(nodes))
	for _, s := range vec {
		node := s.Metric.Get(nodeLabel)
		if _, dup := out[node]; dup || node == "" {
			continue
		}
		if r, ok := toReading(s, res); ok {
			out[node] = r
		}
	}
	return out, nil
}

// eval runs expr as an instant query at now. Range selectors hide what
// precedes a staleness marker, as the Getter's do: otherwise a container
// that vanished keeps an irate() cpu for the length of the range after its
// memory gauge went stale, and its pod would be left out meanwhile.
func (g *RulesGetter) eval(ctx context.Context, expr string, now time.Time) (promql.Vector, error) {
	v, err := g.q.Instant(ctx, expr, now, storage.QueryOptions{DropStale: true})
	if err != nil {
		return nil, err
	}
	vec, ok := v.(promql.Vector)
	if !ok {
		return nil, fmt.Errorf("query %q gave %s, want vector", expr, v.Type())
	}
	return vec, nil
}

// toReading converts a sample of res. The adapter turns NaN and negative
// values into zero; a zero is a claim an autoscaler acts on, so such a
// sample, an infinite or a histogram one are dropped instead.
func toReading(s promql.Sample, res ruleResource) (reading, bool) {
	if s.H != nil {
		return reading{}, false
	}
	q, ok := res.quantity(s.F)
	if !ok {
		klog.V(4).InfoS("Skipping resource rule sample that is not a usage", "resource", res.name, "series", s.Metric.String(), "value", s.F)
		return reading{}, false
	}
	return reading{q: q, t: s.T}, true
}

// maxUint64Float is 2^64, the first float64 beyond uint64.
const maxUint64Float = 0x1p64

// cpuQuantity turns cores into nanocores, metrics-server's precision; the
// adapter rounds to millicores, which hides the usage of idle containers.
// PromQL's rate is a float division, so it is rounded to the nearest
// nanocore rather than truncated (0.00999999999 cores is 10000000n).
func cpuQuantity(cores float64) (resource.Quantity, bool) {
	n := math.Round(cores * 1e9)
	if !(n >= 0 && n < maxUint64Float) {
		return resource.Quantity{}, false
	}
	return quantity(uint64(n), resource.DecimalSI, -9), true
}

// memoryQuantity turns bytes into a whole number of bytes.
func memoryQuantity(bytes float64) (resource.Quantity, bool) {
	if !(bytes >= 0 && bytes < maxUint64Float) {
		return resource.Quantity{}, false
	}
	return quantity(uint64(bytes), resource.BinarySI, 0), true
}

// forEach calls f for 0..n-1 on up to rulesParallelism goroutines. The first
// error cancels the calls still running and is returned; so is the
// context's error when it ends before every call started.
func forEach(ctx context.Context, n int, f func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
	)
	next := make(chan int)
	for range min(n, rulesParallelism) {
		wg.Go(func() {
			for i := range next {
				if err := f(ctx, i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					cancel()
				}
			}
		})
	}
	started := 0
feed:
	for ; started < n; started++ {
		select {
		case next <- started:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first == nil && started < n {
		first = fmt.Errorf("query resource rules: %w", ctx.Err())
	}
	return first
}
