package resource

import (
	"time"
	"unique"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/metrics/pkg/apis/metrics"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// Why a tail: with an hour of history in the head, the PromQL path decodes
// a whole head chunk (up to 120 samples) per series to use the last two or
// three, and builds a matrix per request; metrics-server reads two points
// from a map. The tails hold exactly what usage() needs, the two newest
// samples of each kubelet series, filled by the same commits that write the
// TSDB.
//
// Why the answers are the same: the PromQL path feeds, per pod, every
// series' samples in the window (after its newest staleness marker) to
// addCPU/addMem/addStart in label order. addCPU keeps the increasing run
// of timestamps, and the last two of that run are always among the last two
// samples of some series; addMem keeps the newest last sample; addStart the
// last sample of the last series in label order. Feeding each series' last
// two (cpu) or last one (memory, start time) in the same order therefore
// gives the same two cpu points, the same count (capped at two, which is
// all usage() distinguishes), and the same memory and start time. Where the
// tail cannot vouch for the window (after a restart, before seeding covers
// it, or a series whose older samples it dropped), Last and Complete say so
// and the request goes to PromQL.

// Tails are the kubelet series the Getter reads first: containers grouped
// by namespace and pod, nodes by node.
type Tails struct {
	Containers, Nodes *storage.Tail
}

// TailMaker creates tails; *storage.Storage is one.
type TailMaker interface {
	NewTail(storage.TailOptions) (*storage.Tail, error)
}

// NewTails creates the Getter's tails in s. Call it before scraping starts.
// now is the Getter's clock (nil: the wall clock).
func NewTails(s TailMaker, now func() time.Time) (Tails, error) {
	job := labels.MustNewMatcher(labels.MatchEqual, "job", scrape.KubeletJobName)
	containers, err := s.NewTail(storage.TailOptions{
		Names:    []string{scrape.ContainerCPUMetric, scrape.ContainerMemoryMetric, scrape.ContainerStartTimeMetric},
		Matchers: []*labels.Matcher{job},
		GroupBy:  []string{scrape.NamespaceLabel, scrape.PodLabel},
		Now:      now,
		Info:     seriesInfoOf,
	})
	if err != nil {
		return Tails{}, err
	}
	nodes, err := s.NewTail(storage.TailOptions{
		Names:    []string{scrape.NodeCPUMetric, scrape.NodeMemoryMetric},
		Matchers: []*labels.Matcher{job},
		GroupBy:  []string{scrape.NodeLabel},
		Now:      now,
		Info:     seriesInfoOf,
	})
	if err != nil {
		return Tails{}, err
	}
	return Tails{Containers: containers, Nodes: nodes}, nil
}

// window is the range the PromQL path reads at now, in milliseconds:
// (mint, maxt], as the engine computes it.
func (g *Getter) windowAt(now time.Time) (mint, maxt int64) {
	maxt = now.UnixNano() / int64(time.Millisecond)
	return maxt - g.window.Milliseconds(), maxt
}

// containerLabel names a kubelet series' container.
const containerLabel = "container"

// seriesInfo is what a read needs of a tail series' labels, taken once
// when the tail takes the series in.
type seriesInfo struct {
	metric    string
	container string
	// last is how many newest samples usage() needs: two for a counter's
	// rate, one for a gauge.
	last int
}

// seriesInfoOf returns the series' seriesInfo as a unique.Handle: the
// series of a cluster share a few of them (three metrics times the
// container names in use), so the tails hold one object fewer per series
// and a list reads the same few over and over, where it chased one
// pointer per series (3 ms of a 7,000-pod list in a profile at 100x70).
// Handles that no series holds any more are collected.
func seriesInfoOf(ls labels.Labels) any {
	i := seriesInfo{metric: ls.Get(labels.MetricName), container: ls.Get(containerLabel), last: 1}
	if i.metric == scrape.ContainerCPUMetric || i.metric == scrape.NodeCPUMetric {
		i.last = 2
	}
	return unique.Make(i)
}

// infoOf is the seriesInfo seriesInfoOf gave s.
func infoOf(s *storage.TailSeries) seriesInfo {
	return s.Info().(unique.Handle[seriesInfo]).Value()
}

// podMetricsFromTail answers from the containers' tail, or returns false
// when it cannot answer exactly.
func (g *Getter) podMetricsFromTail(now time.Time, pods []*metav1.PartialObjectMetadata) (out []metrics.PodMetrics, ok bool) {
	if g.tails.Containers == nil {
		return nil, false
	}
	mint, maxt := g.windowAt(now)
	created := metav1.NewTime(now)
	g.tails.Containers.Read(func(r *storage.TailReader) {
		if !r.Complete(mint) {
			return
		}
		out = make([]metrics.PodMetrics, 0, len(pods))
		var ps podSeries
		var buf []promql.FPoint
		for _, p := range pods {
			group := r.Group(p.Namespace, p.Name)
			if len(group) == 0 {
				continue
			}
			ps.names, ps.series = ps.names[:0], ps.series[:0]
			for i := range group {
				s := &group[i]
				info := infoOf(s)
				if info.container == "" {
					continue
				}
				var exact bool
				if buf, exact = s.Last(mint, maxt, info.last, buf[:0]); !exact {
					return
				}
				if len(buf) > 0 {
					addSamples(ps.container(info.container), info.metric, buf)
				}
			}
			if pm, answered := g.podMetrics(&ps, p, created); answered {
				out = append(out, pm)
			}
		}
		ok = true
	})
	return out, ok
}

// nodeMetricsFromTail answers from the nodes' tail, or returns false when
// it cannot answer exactly.
func (g *Getter) nodeMetricsFromTail(now time.Time, nodes []*corev1.Node) (out []metrics.NodeMetrics, ok bool) {
	if g.tails.Nodes == nil {
		return nil, false
	}
	mint, maxt := g.windowAt(now)
	created := metav1.NewTime(now)
	g.tails.Nodes.Read(func(r *storage.TailReader) {
		if !r.Complete(mint) {
			return
		}
		out = make([]metrics.NodeMetrics, 0, len(nodes))
		var buf []promql.FPoint
		for _, n := range nodes {
			var acc series
			found := false
			group := r.Group(n.Name)
			for i := range group {
				s := &group[i]
				info := infoOf(s)
				var exact bool
				if buf, exact = s.Last(mint, maxt, info.last, buf[:0]); !exact {
					return
				}
				if len(buf) > 0 {
					addSamples(&acc, info.metric, buf)
					found = true
				}
			}
			if !found {
				continue
			}
			if nm, answered := g.nodeMetrics(&acc, n, created); answered {
				out = append(out, nm)
			}
		}
		ok = true
	})
	return out, ok
}
