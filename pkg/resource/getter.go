package resource

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/metrics/pkg/apis/metrics"
	"sigs.k8s.io/metrics-server/pkg/api"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// maxNamesInMatcher bounds the names put into one regex matcher. Beyond it
// the query selects everything of the kind and the answer is filtered by
// name instead: one big postings walk beats matching a huge alternation.
const maxNamesInMatcher = 1000

// Clock tells the time; tests pass a fixed one.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Getter answers metrics-server's MetricsGetter from storage. It reads the
// kubelet samples of the Tails when they can answer exactly, and otherwise
// evaluates one PromQL range selector; both give the same answer (see
// tail.go). It is safe for concurrent use; returned slices belong to the
// caller.
type Getter struct {
	q          storage.Querier
	tails      Tails
	resolution time.Duration
	window     time.Duration
	timeout    time.Duration
	clock      Clock
}

var _ api.MetricsGetter = (*Getter)(nil)

// GetterOptions configure a Getter.
type GetterOptions struct {
	// Querier evaluates what the tails cannot answer. Required.
	Querier storage.Querier
	// Tails, when set, answer requests without PromQL (NewTails).
	Tails Tails
	// Resolution is the kubelet scrape interval (--metric-resolution).
	Resolution time.Duration
	// Timeout bounds each evaluation.
	Timeout time.Duration
	// Clock tells the time; nil is the wall clock. The tails must have
	// been created with the same clock.
	Clock Clock
}

// NewGetter returns a Getter for samples scraped every o.Resolution.
func NewGetter(o GetterOptions) *Getter {
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	// Three intervals hold the last two samples even when the kubelet's own
	// timestamps lag the scrape by up to one interval.
	return &Getter{q: o.Querier, tails: o.Tails, resolution: o.Resolution, window: 3 * o.Resolution, timeout: o.Timeout, clock: o.Clock}
}

// GetPodMetrics implements api.PodMetricsGetter with one evaluation for all
// pods. A pod is returned only when every container it reports has usage.
func (g *Getter) GetPodMetrics(pods ...*metav1.PartialObjectMetadata) ([]metrics.PodMetrics, error) {
	if len(pods) == 0 {
		return []metrics.PodMetrics{}, nil
	}
	now := g.clock.Now()
	if out, ok := g.podMetricsFromTail(now, pods); ok {
		return out, nil
	}
	type podKey struct{ ns, name string }
	namespaces := map[string]bool{}
	names := map[string]bool{}
	for _, p := range pods {
		namespaces[p.Namespace] = true
		names[p.Name] = true
	}
	sel := selector([]string{scrape.ContainerCPUMetric, scrape.ContainerMemoryMetric, scrape.ContainerStartTimeMetric},
		matcher("namespace", namespaces), matcher("pod", names))
	m, err := g.matrix(sel, now)
	if err != nil {
		return nil, err
	}
	byPod := make(map[podKey]*podSeries, len(pods))
	for i := range m {
		sm := &m[i]
		var ns, podName, ctr, name string
		sm.Metric.Range(func(l labels.Label) {
			switch l.Name {
			case "namespace":
				ns = l.Value
			case "pod":
				podName = l.Value
			case containerLabel:
				ctr = l.Value
			case labels.MetricName:
				name = l.Value
			}
		})
		if !names[podName] || ctr == "" {
			continue
		}
		key := podKey{ns, podName}
		ps := byPod[key]
		if ps == nil {
			ps = &podSeries{}
			byPod[key] = ps
		}
		addSamples(ps.container(ctr), name, sm.Floats)
	}
	out := make([]metrics.PodMetrics, 0, len(pods))
	created := metav1.NewTime(now)
	for _, p := range pods {
		ps := byPod[podKey{p.Namespace, p.Name}]
		if ps == nil {
			continue
		}
		if pm, ok := g.podMetrics(ps, p, created); ok {
			out = append(out, pm)
		}
	}
	return out, nil
}

// podSeries gathers a pod's containers; pods have few, so a slice beats a map.
type podSeries struct {
	names  []string
	series []series
}

func (p *podSeries) container(name string) *series {
	for i, n := range p.names {
		if n == name {
			return &p.series[i]
		}
	}
	p.names = append(p.names, name)
	p.series = append(p.series, series{})
	return &p.series[len(p.series)-1]
}

// podMetrics is the answer for pod p, or false when it has none.
func (g *Getter) podMetrics(ps *podSeries, p *metav1.PartialObjectMetadata, created metav1.Time) (metrics.PodMetrics, bool) {
	pm := metrics.PodMetrics{Containers: make([]metrics.ContainerMetrics, 0, len(ps.names))}
	var earliest timeInfo
	for i := range ps.series {
		usage, ti, v := ps.series[i].usage(g.resolution, true)
		switch v {
		case incomplete:
			return metrics.PodMetrics{}, false
		case skipped:
			continue
		}
		pm.Containers = append(pm.Containers, metrics.ContainerMetrics{Name: ps.names[i], Usage: usage})
		if earliest.ts.IsZero() || ti.ts.Before(earliest.ts) {
			earliest = ti
		}
	}
	if len(pm.Containers) == 0 {
		// metrics-server would answer a pod with no containers and no
		// timestamp here; an HPA can do nothing with it.
		return metrics.PodMetrics{}, false
	}
	sort.Slice(pm.Containers, func(i, j int) bool { return pm.Containers[i].Name < pm.Containers[j].Name })
	pm.Timestamp = metav1.NewTime(earliest.ts)
	pm.Window = metav1.Duration{Duration: earliest.window}
	pm.ObjectMeta = metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, Labels: p.Labels, CreationTimestamp: created}
	return pm, true
}

// GetNodeMetrics implements api.NodeMetricsGetter with one evaluation for all nodes.
func (g *Getter) GetNodeMetrics(nodes ...*corev1.Node) ([]metrics.NodeMetrics, error) {
	if len(nodes) == 0 {
		return []metrics.NodeMetrics{}, nil
	}
	now := g.clock.Now()
	if out, ok := g.nodeMetricsFromTail(now, nodes); ok {
		return out, nil
	}
	names := make(map[string]bool, len(nodes))
	for _, n := range nodes {
		names[n.Name] = true
	}
	m, err := g.matrix(selector([]string{scrape.NodeCPUMetric, scrape.NodeMemoryMetric}, matcher(scrape.NodeLabel, names)), now)
	if err != nil {
		return nil, err
	}
	byNode := make(map[string]*series, len(nodes))
	for _, s := range m {
		name := s.Metric.Get(scrape.NodeLabel)
		if !names[name] {
			continue
		}
		acc := byNode[name]
		if acc == nil {
			acc = &series{}
			byNode[name] = acc
		}
		addSamples(acc, s.Metric.Get(labels.MetricName), s.Floats)
	}
	out := make([]metrics.NodeMetrics, 0, len(nodes))
	created := metav1.NewTime(now)
	for _, n := range nodes {
		if s := byNode[n.Name]; s != nil {
			if nm, ok := g.nodeMetrics(s, n, created); ok {
				out = append(out, nm)
			}
		}
	}
	return out, nil
}

// nodeMetrics is the answer for node n, or false when it has none.
func (g *Getter) nodeMetrics(s *series, n *corev1.Node, created metav1.Time) (metrics.NodeMetrics, bool) {
	usage, ti, v := s.usage(g.resolution, false)
	if v != answered {
		return metrics.NodeMetrics{}, false
	}
	return metrics.NodeMetrics{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.Labels, CreationTimestamp: created},
		Timestamp:  metav1.NewTime(ti.ts),
		Window:     metav1.Duration{Duration: ti.window},
		Usage:      usage,
	}, true
}

// matrix evaluates sel over the window ending at now, hiding series that
// went stale.
func (g *Getter) matrix(sel string, now time.Time) (promql.Matrix, error) {
	ctx, cancel := context.WithTimeout(context.Background(), g.timeout)
	defer cancel()
	expr := fmt.Sprintf("%s[%s]", sel, model.Duration(g.window))
	v, err := g.q.Instant(ctx, expr, now, storage.QueryOptions{DropStale: true})
	if err != nil {
		return nil, fmt.Errorf("query resource usage: %w", err)
	}
	m, ok := v.(promql.Matrix)
	if !ok {
		return nil, fmt.Errorf("query resource usage: got %s, want matrix", v.Type())
	}
	return m, nil
}

func addSamples(acc *series, metric string, fs []promql.FPoint) {
	switch metric {
	case scrape.ContainerCPUMetric, scrape.NodeCPUMetric:
		acc.addCPU(fs)
	case scrape.ContainerMemoryMetric, scrape.NodeMemoryMetric:
		acc.addMem(fs)
	case scrape.ContainerStartTimeMetric:
		acc.addStart(fs)
	}
}

// selector builds a vector selector for names, restricted to the kubelet job.
func selector(names []string, extra ...string) string {
	ms := []string{
		fmt.Sprintf("__name__=~%q", strings.Join(names, "|")),
		fmt.Sprintf("job=%q", scrape.KubeletJobName),
	}
	for _, e := range extra {
		if e != "" {
			ms = append(ms, e)
		}
	}
	return "{" + strings.Join(ms, ",") + "}"
}

// matcher returns an equality or set matcher for label, or "" when the set
// is too large to be worth matching in the index.
func matcher(label string, values map[string]bool) string {
	if len(values) == 0 || len(values) > maxNamesInMatcher {
		return ""
	}
	vs := make([]string, 0, len(values))
	for v := range values {
		vs = append(vs, v)
	}
	if len(vs) == 1 {
		return fmt.Sprintf("%s=%q", label, vs[0])
	}
	sort.Strings(vs)
	for i, v := range vs {
		vs[i] = regexp.QuoteMeta(v)
	}
	return fmt.Sprintf("%s=~%q", label, strings.Join(vs, "|"))
}
