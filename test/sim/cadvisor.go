package sim

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strings"
	"time"

	"github.com/google/cadvisor/lib/container"
	"github.com/google/cadvisor/lib/metrics"
	info "github.com/google/cadvisor/lib/model"
	kubelettypes "k8s.io/kubelet/pkg/types"
	"k8s.io/utils/clock"
)

// Every simulated node has this shape; kubeagent reports it as the Node's
// capacity and /metrics/cadvisor as machine_cpu_cores and machine_memory_bytes.
const (
	NodeCPUCores    = 4
	NodeMemoryBytes = 8 << 30
)

// PauseImage is the sandbox image, and the image of a container given none.
const PauseImage = "registry.k8s.io/pause:3.10"

// The cAdvisor side of the model. Only CPU and memory come from the usage
// model (and equal /metrics/resource); the rest are fixed rates chosen to be
// plausible and easy to check.
const (
	cfsPeriod = 100 * time.Millisecond
	// A container with a CPU limit is throttled in one period in
	// throttledEvery, for throttledTime each: a 5% throttling ratio.
	throttledEvery = 20
	throttledTime  = 5 * time.Millisecond
	// Network counters of the pod's sandbox, per request the pod served.
	rxBytesPerRequest   = 512
	txBytesPerRequest   = 2048
	rxPacketsPerRequest = 4
	txPacketsPerRequest = 3
	requestsPerRxDrop   = 1000
	// Disk: a container's writable layer holds containerFsBytes; it read
	// containerReadBytes at start and writes containerWriteRate bytes/s.
	containerFsBytes   = 8 * mib
	containerReadBytes = 2 * mib
	containerWriteRate = 4096
	nodeFsBytes        = 100 << 30
	nodeFsInodes       = 6_553_600
	nodeFsUsedBytes    = 12 << 30 // the OS and images, before any writable layer
	nodeWriteRate      = 64 << 10
	ioBlock            = 4096
	// The pause container is outside the usage model: a constant few
	// milliseconds and a quarter MiB, not counted in the pod cgroup, which
	// stays what /metrics/resource reports for the pod.
	pauseCPU    = 20 * time.Millisecond
	pauseMemory = 256 << 10
	pauseFs     = 32 << 10
)

// Where the simulated node's block device and root filesystem are.
var (
	rootFsDevice = "/dev/vda1"
	diskDevice   = info.PerDiskStats{Device: "/dev/vda", Major: 252, Minor: 0}
)

// cadvisorMetrics are the families a v1.37 kubelet includes on a cgroup v2
// node with PSI (pkg/kubelet/server: includedMetrics, KubeletPSI is GA).
var cadvisorMetrics = container.MetricSet{
	container.CpuUsageMetrics:     struct{}{},
	container.MemoryUsageMetrics:  struct{}{},
	container.DiskIOMetrics:       struct{}{},
	container.DiskUsageMetrics:    struct{}{},
	container.NetworkUsageMetrics: struct{}{},
	container.AppMetrics:          struct{}{},
	container.ProcessMetrics:      struct{}{},
	container.OOMMetrics:          struct{}{},
	container.PressureMetrics:     struct{}{},
}

// podCgroups names a pod's cgroups as the systemd cgroup driver and
// containerd do, fixed when the pod starts.
type podCgroups struct {
	path    string // the pod cgroup
	sandbox string // sandbox container ID
	ids     []string
	images  []string
	limits  []ContainerLimits
}

func newPodCgroups(spec PodSpec) podCgroups {
	c := podCgroups{sandbox: SandboxID(spec.UID)}
	anyLimit := false
	for i, name := range spec.Containers {
		c.ids = append(c.ids, ContainerID(spec.UID, name))
		img := PauseImage
		if i < len(spec.Images) && spec.Images[i] != "" {
			img = spec.Images[i]
		}
		c.images = append(c.images, img)
		var l ContainerLimits
		if i < len(spec.Limits) {
			l = spec.Limits[i]
		}
		anyLimit = anyLimit || l != ContainerLimits{}
		c.limits = append(c.limits, l)
	}
	qos := spec.QOSClass
	if qos == "" {
		qos = "BestEffort"
		if anyLimit {
			qos = "Burstable"
		}
	}
	uid := strings.ReplaceAll(spec.UID, "-", "_")
	switch qos {
	case "Guaranteed":
		c.path = "/kubepods.slice/kubepods-pod" + uid + ".slice"
	default:
		q := strings.ToLower(qos)
		c.path = "/kubepods.slice/kubepods-" + q + ".slice/kubepods-" + q + "-pod" + uid + ".slice"
	}
	return c
}

// ContainerID is the runtime's ID of a pod's container, as its status reports
// it (without the containerd:// prefix).
func ContainerID(podUID, container string) string { return digest(podUID + "/" + container) }

// SandboxID is the runtime's ID of a pod's sandbox.
func SandboxID(podUID string) string { return digest("sandbox/" + podUID) }

func digest(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func (c podCgroups) scope(id string) string { return c.path + "/cri-containerd-" + id + ".scope" }

// cadvisorProvider is what cAdvisor's collectors read: the node's cgroups,
// built from one snapshot per scrape. Serving it costs about 1 ms of CPU
// per container (the collector, the text encoding and gzip, as in a
// kubelet), and nothing while no one scrapes /metrics/cadvisor.
type cadvisorProvider struct {
	node *Node
	sim  *Sim
}

func (p *cadvisorProvider) GetRequestedContainersInfo(string, info.RequestOptions) (map[string]*info.ContainerInfo, error) {
	return p.node.cgroupInfos(p.node.Snapshot(p.sim.clock.Now())), nil
}

func (p *cadvisorProvider) GetVersionInfo() (*info.VersionInfo, error) {
	return &info.VersionInfo{KernelVersion: KernelVersion, ContainerOsVersion: "simkubelet"}, nil
}

// GetMachineInfo is stamped with the node's start: the kubelet reads it once
// when it starts and serves that copy (setCachedMachineInfo).
func (p *cadvisorProvider) GetMachineInfo() (*info.MachineInfo, error) {
	id := MachineID(p.node.Name)
	return &info.MachineInfo{
		Timestamp: p.node.start, NumCores: NodeCPUCores, NumPhysicalCores: NodeCPUCores / 2, NumSockets: 1,
		MemoryCapacity: NodeMemoryBytes, MachineID: id, SystemUUID: id, BootID: id,
	}, nil
}

// KernelVersion and MachineID (also the system UUID and boot ID) are what
// kubeagent reports in the Node's status, and cAdvisor in its labels.
const KernelVersion = "6.1.0-sim"

// MachineID is a node's machine ID, system UUID and boot ID.
func MachineID(node string) string { return "sim-" + node }

// cadvisorLabels is the kubelet's containerPrometheusLabelsFunc. The kubelet
// finds the pod of a pod-level cgroup by its path; the simulator puts the
// pod's name in the cgroup's labels instead, with the same result.
func cadvisorLabels(c *info.ContainerInfo) map[string]string {
	var name string
	if len(c.Aliases) > 0 {
		name = c.Aliases[0]
	}
	return map[string]string{
		metrics.LabelID:    c.Name,
		metrics.LabelName:  name,
		metrics.LabelImage: c.Spec.Image,
		"pod":              c.Spec.Labels[kubelettypes.KubernetesPodNameLabel],
		"namespace":        c.Spec.Labels[kubelettypes.KubernetesPodNamespaceLabel],
		"container":        c.Spec.Labels[kubelettypes.KubernetesContainerNameLabel],
	}
}

// cgroupInfos renders a snapshot as cAdvisor's view of the node: the root
// cgroup, and per pod its cgroup, its sandbox and its containers.
func (n *Node) cgroupInfos(s NodeSnapshot) map[string]*info.ContainerInfo {
	out := make(map[string]*info.ContainerInfo, 1+len(s.pods)*4)
	up := s.Time.Sub(n.start)
	var fsUsed uint64
	for _, ps := range s.pods {
		fsUsed += uint64(len(ps.usage.Containers))*containerFsBytes + pauseFs
		for _, ci := range podCgroupInfos(ps, s.Time) {
			out[ci.Name] = ci
		}
	}
	root := &info.ContainerInfo{
		ContainerReference: info.ContainerReference{Name: "/"},
		Spec:               cgroupSpec(n.start, nil, ContainerLimits{}),
		Stats: []*info.ContainerStats{cgroupStats(s.Time, cpuNanos(s.CPUSeconds), memBytes(s.Rate.MemoryBytes),
			diskIO(nodeWriteRate*uint64(max(up, 0)/time.Second), containerReadBytes), nil)},
	}
	root.Spec.HasFilesystem = true
	root.Stats[0].Filesystem = []info.FsStats{fsStats(nodeFsUsedBytes + fsUsed)}
	out[root.Name] = root
	return out
}

func podCgroupInfos(ps podSnapshot, now time.Time) []*info.ContainerInfo {
	p, u, cg := ps.pod, ps.usage, ps.pod.cgroups
	start := p.Model.Start()
	podLabels := map[string]string{
		kubelettypes.KubernetesPodNameLabel:      p.Name,
		kubelettypes.KubernetesPodNamespaceLabel: p.Namespace,
		kubelettypes.KubernetesPodUIDLabel:       p.UID,
	}
	withLabels := func(extra map[string]string) map[string]string {
		l := make(map[string]string, len(podLabels)+len(extra))
		for k, v := range podLabels {
			l[k] = v
		}
		for k, v := range extra {
			l[k] = v
		}
		return l
	}
	written := containerWriteRate * uint64(max(now.Sub(start), 0)/time.Second)

	// The pod cgroup's quota and limit are its containers' sum when every
	// container has one, as the kubelet sets them.
	var podLimits ContainerLimits
	allCPU, allMem := true, true
	for _, l := range cg.limits {
		podLimits.CPUCores += l.CPUCores
		podLimits.MemoryBytes += l.MemoryBytes
		allCPU = allCPU && l.CPUCores > 0
		allMem = allMem && l.MemoryBytes > 0
	}
	if !allCPU {
		podLimits.CPUCores = 0
	}
	if !allMem {
		podLimits.MemoryBytes = 0
	}
	n := uint64(len(u.Containers))
	pod := &info.ContainerInfo{
		ContainerReference: info.ContainerReference{Name: cg.path},
		Spec:               cgroupSpec(start, withLabels(nil), podLimits),
		Stats: []*info.ContainerStats{cgroupStats(now, cpuNanos(u.CPUSeconds()), memBytes(u.Rate().MemoryBytes),
			diskIO(n*written, n*containerReadBytes), cfs(podLimits, now.Sub(start)))},
	}

	sbID := cg.scope(cg.sandbox)
	sandbox := &info.ContainerInfo{
		ContainerReference: info.ContainerReference{Name: sbID, Id: cg.sandbox, Aliases: []string{cg.sandbox, sbID}},
		Spec:               cgroupSpec(start, withLabels(map[string]string{"io.cri-containerd.kind": "sandbox"}), ContainerLimits{}),
		Stats:              []*info.ContainerStats{cgroupStats(now, uint64(pauseCPU), pauseMemory, nil, nil)},
	}
	sandbox.Spec.Image, sandbox.Spec.HasNetwork, sandbox.Spec.HasFilesystem = PauseImage, true, true
	sandbox.Stats[0].Filesystem = []info.FsStats{fsStats(pauseFs)}
	// Only the sandbox reports the pod's network: the other containers
	// share its namespace, and containerd's handler leaves them out.
	sandbox.Stats[0].Network = &info.NetworkStats{Interfaces: []info.InterfaceStats{{
		Name:    "eth0",
		RxBytes: u.Requests * rxBytesPerRequest, RxPackets: u.Requests * rxPacketsPerRequest, RxDropped: u.Requests / requestsPerRxDrop,
		TxBytes: u.Requests * txBytesPerRequest, TxPackets: u.Requests * txPacketsPerRequest,
	}}}
	out := []*info.ContainerInfo{pod, sandbox}

	for i, c := range u.Containers {
		id := cg.scope(cg.ids[i])
		ci := &info.ContainerInfo{
			ContainerReference: info.ContainerReference{Name: id, Id: cg.ids[i], Aliases: []string{cg.ids[i], id}},
			Spec: cgroupSpec(start, withLabels(map[string]string{
				kubelettypes.KubernetesContainerNameLabel: c.Name, "io.cri-containerd.kind": "container",
			}), cg.limits[i]),
			Stats: []*info.ContainerStats{cgroupStats(now, cpuNanos(c.CPUSeconds), memBytes(c.MemoryBytes),
				diskIO(written, containerReadBytes), cfs(cg.limits[i], now.Sub(start)))},
		}
		ci.Spec.Image, ci.Spec.HasFilesystem = cg.images[i], true
		ci.Stats[0].Filesystem = []info.FsStats{fsStats(containerFsBytes)}
		out = append(out, ci)
	}
	return out
}

// cpuNanos and memBytes round as the stats summary does, so a cgroup's
// counters equal what /metrics/resource serves for it.
func cpuNanos(seconds float64) uint64 { return uint64(seconds*1e9 + 0.5) }
func memBytes(b float64) uint64       { return uint64(b + 0.5) }

// cgroupSpec is a cgroup v2 spec: CPU weight as shares (2 without a limit,
// the limit otherwise, as requests default to limits), the CFS period, and
// the quota and memory limit when set.
func cgroupSpec(created time.Time, labels map[string]string, l ContainerLimits) info.ContainerSpec {
	spec := info.ContainerSpec{
		CreationTime: created, Labels: labels,
		HasCpu: true, Cpu: info.CpuSpec{Limit: max(2, uint64(l.CPUCores*1024)), Period: uint64(cfsPeriod / time.Microsecond)},
		// Unlimited is memory.max "max": cAdvisor reads MaxUint64 and
		// serves 0.
		HasMemory: true, Memory: info.MemorySpec{Limit: math.MaxUint64, Reservation: 0, SwapLimit: 0},
		HasDiskIo: true, HasProcesses: true,
	}
	if l.CPUCores > 0 {
		spec.Cpu.Quota = uint64(l.CPUCores * float64(cfsPeriod/time.Microsecond))
	}
	if l.MemoryBytes > 0 {
		spec.Memory.Limit = memBytes(l.MemoryBytes)
	}
	return spec
}

// cgroupStats splits CPU 70/30 between user and system, and gives memory
// one value for usage, working set and RSS, as the stats summary does.
func cgroupStats(t time.Time, cpu, mem uint64, io *info.DiskIoStats, cfs *info.CpuCFS) *info.ContainerStats {
	s := &info.ContainerStats{
		Timestamp: t,
		Cpu:       &info.CpuStats{Usage: info.CpuUsage{Total: cpu, User: cpu * 7 / 10, System: cpu - cpu*7/10}},
		Memory:    &info.MemoryStats{Usage: mem, MaxUsage: mem, WorkingSet: mem, RSS: mem},
		DiskIo:    io,
		Processes: &info.ProcessStats{ProcessCount: 1, FdCount: 12, SocketCount: 2, ThreadsCurrent: 8,
			Ulimits: []info.UlimitSpec{{Name: "max_open_files", SoftLimit: 1 << 20, HardLimit: 1 << 20}}},
	}
	if cfs != nil {
		s.Cpu.CFS = *cfs
		// Throttled time is time spent waiting for CPU.
		s.Cpu.PSI.Some.Total = cfs.ThrottledTime / uint64(time.Microsecond)
	}
	if io == nil {
		s.DiskIo = &info.DiskIoStats{}
	}
	return s
}

// cfs counts the CFS periods since start when there is a quota; nil when not.
func cfs(l ContainerLimits, running time.Duration) *info.CpuCFS {
	if l.CPUCores <= 0 {
		return nil
	}
	periods := uint64(max(running, 0) / cfsPeriod)
	throttled := periods / throttledEvery
	return &info.CpuCFS{Periods: periods, ThrottledPeriods: throttled, ThrottledTime: throttled * uint64(throttledTime)}
}

func diskIO(written, read uint64) *info.DiskIoStats {
	per := func(r, w uint64) []info.PerDiskStats {
		d := diskDevice
		d.Stats = map[string]uint64{"Read": r, "Write": w}
		return []info.PerDiskStats{d}
	}
	return &info.DiskIoStats{
		IoServiceBytes: per(read, written),
		IoServiced:     per(read/ioBlock, written/ioBlock),
	}
}

func fsStats(used uint64) info.FsStats {
	return info.FsStats{
		Device: rootFsDevice, Type: "vfs", Limit: nodeFsBytes, Usage: used, Available: nodeFsBytes - nodeFsUsedBytes,
		HasInodes: true, Inodes: nodeFsInodes, InodesFree: nodeFsInodes - used/ioBlock,
	}
}

// collectorClock gives cAdvisor's collector, which only reads the time (for
// container_last_seen), the simulation's clock.
type collectorClock struct{ clock.PassiveClock }

var _ clock.Clock = collectorClock{}

func (collectorClock) After(d time.Duration) <-chan time.Time { return clock.RealClock{}.After(d) }
func (collectorClock) NewTimer(d time.Duration) clock.Timer   { return clock.RealClock{}.NewTimer(d) }
func (collectorClock) Sleep(d time.Duration)                  { clock.RealClock{}.Sleep(d) }
func (collectorClock) Tick(d time.Duration) <-chan time.Time  { return clock.RealClock{}.Tick(d) }
