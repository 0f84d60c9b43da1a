package main

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/kubernetes/pkg/kubelet/server/stats"
)

const (
	// t0Unix is the time of round 1 (2026-09-21T14:13:20Z). Every CPU, memory and swap
	// sample of a round carries that round's time, so exposition timestamps are exact.
	t0Unix         = 1790000000
	scrapeInterval = 15 * time.Second
	nodeName       = "node-a"
	gib            = 1 << 30
	mib            = 1 << 20
)

func at(offsetSeconds int64) time.Time { return time.Unix(t0Unix+offsetSeconds, 0).UTC() }

// usage is one cgroup's reading; cpu is cumulative core-seconds, kept as nanoseconds the
// way the summary API reports it so no float rounding happens before the collector's.
type usage struct {
	cpuNanos uint64
	memBytes uint64
}

func seconds(s float64) uint64 { return uint64(s*1e9 + 0.5) }

type containerSample struct {
	name  string
	start time.Time
	// use is nil for a container the runtime has no CPU or memory numbers for yet: the
	// summary then has CPU and Memory structs whose usage pointers are nil.
	use *usage
}

type podSample struct {
	namespace, name, uid string
	start                time.Time
	containers           []containerSample
	use                  usage
}

type round struct {
	file string
	time time.Time
	node usage
	pods []podSample
}

// scenario returns the two rounds, 15 s apart. Round 2 adds a container restart
// (default/restart-1) and a pod whose second container has no data yet (default/nodata-1).
func scenario() []round {
	web := func(appCPU, sideCPU float64, appMem uint64) podSample {
		return podSample{
			namespace: "default", name: "web-1", uid: "6a0e5c4d-0001-4000-8000-000000000001", start: at(-86400),
			containers: []containerSample{
				{name: "app", start: at(-86400), use: &usage{seconds(appCPU), appMem}},
				{name: "sidecar", start: at(-86400), use: &usage{seconds(sideCPU), 20 * mib}},
			},
			use: usage{seconds(appCPU + sideCPU), appMem + 20*mib},
		}
	}
	dns := func(cpu float64) podSample {
		return podSample{
			namespace: "kube-system", name: "dns-1", uid: "6a0e5c4d-0002-4000-8000-000000000002", start: at(-172800),
			containers: []containerSample{{name: "dns", start: at(-172800), use: &usage{seconds(cpu), 30 * mib}}},
			use:        usage{seconds(cpu), 30 * mib},
		}
	}
	// The pod cgroup outlives a container restart, so the pod's counter keeps rising
	// while the container's starts again from zero.
	restart := func(start time.Time, c usage, pod usage) podSample {
		return podSample{
			namespace: "default", name: "restart-1", uid: "6a0e5c4d-0003-4000-8000-000000000003", start: at(-7200),
			containers: []containerSample{{name: "app", start: start, use: &c}},
			use:        pod,
		}
	}
	nodata := podSample{
		namespace: "default", name: "nodata-1", uid: "6a0e5c4d-0004-4000-8000-000000000004", start: at(3),
		containers: []containerSample{
			{name: "app", start: at(4), use: &usage{seconds(0.12), 15 * mib}},
			{name: "starting", start: at(14)},
		},
		use: usage{seconds(0.12), 15 * mib},
	}
	return []round{
		{
			file: "round1.txt", time: at(0),
			node: usage{seconds(1000), 2 * gib},
			pods: []podSample{
				web(10.0, 2.0, 100*mib),
				dns(5.0),
				restart(at(-7200), usage{seconds(50.0), 50 * mib}, usage{seconds(50.0), 50 * mib}),
			},
		},
		{
			file: "round2.txt", time: at(15),
			node: usage{seconds(1003), 2*gib + 32*mib},
			pods: []podSample{
				web(10.75, 2.15, 102*mib),
				dns(5.3),
				restart(at(5), usage{seconds(0.3), 10 * mib}, usage{seconds(50.6), 10 * mib}),
				nodata,
			},
		},
	}
}

func cpuStats(t metav1.Time, u *usage) *statsv1alpha1.CPUStats {
	if u == nil {
		return &statsv1alpha1.CPUStats{Time: t}
	}
	return &statsv1alpha1.CPUStats{Time: t, UsageCoreNanoSeconds: new(u.cpuNanos)}
}

func memoryStats(t metav1.Time, u *usage) *statsv1alpha1.MemoryStats {
	if u == nil {
		return &statsv1alpha1.MemoryStats{Time: t}
	}
	return &statsv1alpha1.MemoryStats{Time: t, WorkingSetBytes: new(u.memBytes)}
}

// swapStats reports zero swap use, as a cgroup v2 node without swap does. A container
// without data gets none, like its CPU and memory.
func swapStats(t metav1.Time, u *usage) *statsv1alpha1.SwapStats {
	if u == nil {
		return nil
	}
	return &statsv1alpha1.SwapStats{Time: t, SwapUsageBytes: new(uint64(0))}
}

// summary builds the part of the kubelet's stats summary that GetCPUAndMemoryStats fills.
func (r round) summary() *statsv1alpha1.Summary {
	t := metav1.NewTime(r.time)
	s := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{
		NodeName:  nodeName,
		StartTime: metav1.NewTime(at(-30 * 86400)),
		CPU:       cpuStats(t, &r.node),
		Memory:    memoryStats(t, &r.node),
		Swap:      swapStats(t, &r.node),
	}}
	for _, p := range r.pods {
		ps := statsv1alpha1.PodStats{
			PodRef:    statsv1alpha1.PodReference{Name: p.name, Namespace: p.namespace, UID: p.uid},
			StartTime: metav1.NewTime(p.start),
			CPU:       cpuStats(t, &p.use),
			Memory:    memoryStats(t, &p.use),
			Swap:      swapStats(t, &p.use),
		}
		for _, c := range p.containers {
			ps.Containers = append(ps.Containers, statsv1alpha1.ContainerStats{
				Name:      c.name,
				StartTime: metav1.NewTime(c.start),
				CPU:       cpuStats(t, c.use),
				Memory:    memoryStats(t, c.use),
				Swap:      swapStats(t, c.use),
			})
		}
		s.Pods = append(s.Pods, ps)
	}
	return s
}

// fakeSummaryProvider serves one fixed summary; the collector only calls
// GetCPUAndMemoryStats.
type fakeSummaryProvider struct{ summary *statsv1alpha1.Summary }

var _ stats.SummaryProvider = (*fakeSummaryProvider)(nil)

func (f *fakeSummaryProvider) Get(context.Context, bool) (*statsv1alpha1.Summary, error) {
	return f.summary, nil
}

func (f *fakeSummaryProvider) GetCPUAndMemoryStats(context.Context) (*statsv1alpha1.Summary, error) {
	return f.summary, nil
}
