package sim

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

// A node's own use on top of its pods': what the system slice and the kubelet cost.
const (
	NodeOverheadCPU    = 0.1       // cores
	NodeOverheadMemory = 500 * mib // bytes
)

// Mode is how a node's /metrics/resource answers; the other kubelet endpoints
// always work, so a test can tell a broken scrape from a dead node.
type Mode string

// Modes settable through the control API.
const (
	ModeOK      Mode = "ok"
	ModeGarbage Mode = "garbage" // 200 with a body no Prometheus parser accepts
	Mode500     Mode = "500"
	ModeHang    Mode = "hang" // never answers; the client's timeout ends the request
)

// ParseMode accepts the names the control API takes.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case ModeOK, ModeGarbage, Mode500, ModeHang:
		return m, nil
	}
	return "", fmt.Errorf("unknown mode %q (want ok, garbage, 500 or hang)", s)
}

// Node is one simulated node: its pods and the counters its kubelet reports.
// Goroutine-safe.
type Node struct {
	Name  string
	IP    netip.Addr
	start time.Time

	mu sync.Mutex
	// pods is keyed by identity, not name: a pod being stopped and its successor
	// under the same name are briefly both here, and each must be retired.
	pods map[*Pod]bool
	// retiredCPU keeps the core-seconds of removed pods so the node counter never
	// goes back when a pod goes away, as a real node's cgroup would not.
	retiredCPU float64
	mode       Mode
}

// NewNode returns a node with no pods, booted at start.
func NewNode(name string, ip netip.Addr, start time.Time) *Node {
	return &Node{Name: name, IP: ip, start: start.Round(0), pods: map[*Pod]bool{}, mode: ModeOK}
}

// Mode is the current /metrics/resource behaviour.
func (n *Node) Mode() Mode {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.mode
}

// SetMode changes the /metrics/resource behaviour.
func (n *Node) SetMode(m Mode) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mode = m
}

func (n *Node) addPod(p *Pod) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.pods[p] = true
}

// removePod drops the pod, keeping its CPU in the node's counter.
func (n *Node) removePod(p *Pod, now time.Time) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.pods[p] {
		return
	}
	n.retiredCPU += p.Model.Usage(now).CPUSeconds()
	delete(n.pods, p)
}

// podSnapshot is a pod's reading within one node snapshot.
type podSnapshot struct {
	pod   *Pod
	usage PodUsage
}

// NodeSnapshot is a consistent reading of a node and all its pods at one instant.
type NodeSnapshot struct {
	Time       time.Time
	CPUSeconds float64
	Rate       Rate
	pods       []podSnapshot // sorted by key
}

// Snapshot integrates every pod up to now and sums them into the node's counters.
func (n *Node) Snapshot(now time.Time) NodeSnapshot {
	n.mu.Lock()
	defer n.mu.Unlock()
	now = now.Round(0)
	s := NodeSnapshot{
		Time:       now,
		CPUSeconds: n.retiredCPU + NodeOverheadCPU*max(now.Sub(n.start).Seconds(), 0),
		Rate:       Rate{CPUCores: NodeOverheadCPU, MemoryBytes: NodeOverheadMemory},
	}
	for p := range n.pods {
		u := p.Model.Usage(now)
		// A stopping pod still burns CPU on the node, but is no longer listed:
		// its successor under the same name may already be.
		if !p.stopping.Load() {
			s.pods = append(s.pods, podSnapshot{pod: p, usage: u})
		}
		s.CPUSeconds += u.CPUSeconds()
		r := u.Rate()
		s.Rate.CPUCores += r.CPUCores
		s.Rate.MemoryBytes += r.MemoryBytes
	}
	slices.SortFunc(s.pods, func(a, b podSnapshot) int {
		return cmp.Or(strings.Compare(a.pod.Key(), b.pod.Key()), strings.Compare(a.pod.UID, b.pod.UID))
	})
	return s
}

// Summary renders a snapshot as the kubelet's stats summary. Every CPU, memory and
// swap reading carries the snapshot time, which the collector turns into the
// exposition timestamps. Swap is zero, as on a cgroup v2 node without swap.
func (n *Node) Summary(s NodeSnapshot) *statsv1alpha1.Summary {
	t := metav1.NewTime(s.Time)
	sum := &statsv1alpha1.Summary{Node: statsv1alpha1.NodeStats{
		NodeName:  n.Name,
		StartTime: metav1.NewTime(n.start),
		CPU:       cpuStats(t, s.CPUSeconds, s.Rate.CPUCores),
		Memory:    memoryStats(t, s.Rate.MemoryBytes),
		Swap:      swapStats(t),
	}}
	for _, ps := range s.pods {
		p, u := ps.pod, ps.usage
		r := u.Rate()
		st := statsv1alpha1.PodStats{
			PodRef:    statsv1alpha1.PodReference{Name: p.Name, Namespace: p.Namespace, UID: p.UID},
			StartTime: metav1.NewTime(p.Model.Start()),
			CPU:       cpuStats(t, u.CPUSeconds(), r.CPUCores),
			Memory:    memoryStats(t, r.MemoryBytes),
			Swap:      swapStats(t),
		}
		for _, c := range u.Containers {
			st.Containers = append(st.Containers, statsv1alpha1.ContainerStats{
				Name:      c.Name,
				StartTime: metav1.NewTime(p.Model.Start()),
				CPU:       cpuStats(t, c.CPUSeconds, c.CPUCores),
				Memory:    memoryStats(t, c.MemoryBytes),
				Swap:      swapStats(t),
			})
		}
		sum.Pods = append(sum.Pods, st)
	}
	return sum
}

func cpuStats(t metav1.Time, seconds, cores float64) *statsv1alpha1.CPUStats {
	return &statsv1alpha1.CPUStats{
		Time:                 t,
		UsageCoreNanoSeconds: new(uint64(seconds*1e9 + 0.5)),
		UsageNanoCores:       new(uint64(cores*1e9 + 0.5)),
	}
}

func memoryStats(t metav1.Time, bytes float64) *statsv1alpha1.MemoryStats {
	b := uint64(bytes + 0.5)
	return &statsv1alpha1.MemoryStats{Time: t, UsageBytes: new(b), WorkingSetBytes: new(b), RSSBytes: new(b)}
}

func swapStats(t metav1.Time) *statsv1alpha1.SwapStats {
	return &statsv1alpha1.SwapStats{Time: t, SwapUsageBytes: new(uint64(0))}
}
