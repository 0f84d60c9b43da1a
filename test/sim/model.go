package sim

import (
	"fmt"
	"strconv"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Annotations a pod can carry to shape its usage.
const (
	AnnotationCPUBase       = "sim.metrics-gateway.io/cpu-base"        // cores per container
	AnnotationCPUPerRequest = "sim.metrics-gateway.io/cpu-per-request" // cores per req/s
	AnnotationMemory        = "sim.metrics-gateway.io/memory"          // bytes per container, quantity
	AnnotationQueueDepth    = "sim.metrics-gateway.io/queue-depth"     // initial queue_depth gauge
)

const mib = 1 << 20

// MemoryPerRPS is the working set a container adds per request per second it serves.
const MemoryPerRPS = mib

// Params shape one pod's usage. Rates are per container.
type Params struct {
	CPUBase       float64 // cores
	CPUPerRequest float64 // cores per request/s
	MemoryBytes   float64
	QueueDepth    float64
}

// DefaultParams are what a pod without annotations gets.
func DefaultParams() Params {
	return Params{CPUBase: 0.01, CPUPerRequest: 0.01, MemoryBytes: 50 * mib}
}

// ParamsFromAnnotations reads the sim annotations over DefaultParams and reports
// every malformed one; the pod still runs with defaults for those.
func ParamsFromAnnotations(a map[string]string) (Params, []error) {
	p := DefaultParams()
	var errs []error
	num := func(key string, dst *float64) {
		if v, ok := a[key]; ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 {
				errs = append(errs, fmt.Errorf("annotation %s=%q: want a non-negative number", key, v))
				return
			}
			*dst = f
		}
	}
	num(AnnotationCPUBase, &p.CPUBase)
	num(AnnotationCPUPerRequest, &p.CPUPerRequest)
	num(AnnotationQueueDepth, &p.QueueDepth)
	if v, ok := a[AnnotationMemory]; ok {
		q, err := resource.ParseQuantity(v)
		if err != nil || q.Sign() < 0 {
			errs = append(errs, fmt.Errorf("annotation %s=%q: want a non-negative quantity", AnnotationMemory, v))
		} else {
			p.MemoryBytes = q.AsApproximateFloat64()
		}
	}
	return p, errs
}

// Rate is a container's (or pod's, or node's) usage at one instant.
type Rate struct {
	CPUCores    float64 `json:"cpuCores"`
	MemoryBytes float64 `json:"memoryBytes"`
}

// ContainerUsage is one container's cumulative CPU and current rates.
type ContainerUsage struct {
	Name       string
	CPUSeconds float64 // cumulative core-seconds since Start
	Rate
}

// PodUsage is a consistent reading of a pod at Time.
type PodUsage struct {
	Time       time.Time
	RPS        float64
	Requests   uint64           // served so far, the network counters' source
	Containers []ContainerUsage // in spec order
}

// CPUSeconds is the pod cgroup's counter: the sum of its containers'.
func (u PodUsage) CPUSeconds() float64 {
	var s float64
	for _, c := range u.Containers {
		s += c.CPUSeconds
	}
	return s
}

// Rate sums the containers' current rates.
func (u PodUsage) Rate() Rate {
	var r Rate
	for _, c := range u.Containers {
		r.CPUCores += c.CPUCores
		r.MemoryBytes += c.MemoryBytes
	}
	return r
}

// PodModel is the usage model of one pod. All methods are goroutine-safe and take
// the current time from the caller, so tests drive it with a fake clock.
type PodModel struct {
	mu         sync.Mutex
	params     Params
	start      time.Time
	last       int64 // Unix ns; counters are integrated up to here
	names      []string
	cpuSeconds []float64
	extraCPU   float64 // cores, split across containers
	queueDepth float64
	requests   uint64
	window     rateWindow
}

// NewPodModel starts a pod with the given containers at start. It needs at least one
// container name.
func NewPodModel(containers []string, p Params, start time.Time) *PodModel {
	return &PodModel{
		params: p, start: start.Round(0), last: start.UnixNano(), queueDepth: p.QueueDepth,
		names: append([]string(nil), containers...), cpuSeconds: make([]float64, len(containers)),
	}
}

// Start is when the pod (and all its containers) started.
func (m *PodModel) Start() time.Time { return m.start }

// ServeRequest counts one request at now.
func (m *PodModel) ServeRequest(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked(now)
	m.window.add(max(now.UnixNano(), m.last))
	m.requests++
}

// Requests is the number of requests served so far.
func (m *PodModel) Requests() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests
}

// SetExtraCPU sets extra cores for the whole pod from now on.
func (m *PodModel) SetExtraCPU(now time.Time, cores float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked(now) // the old value applies up to now
	m.extraCPU = cores
}

// SetQueueDepth sets the queue_depth gauge.
func (m *PodModel) SetQueueDepth(v float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.queueDepth = v
}

// QueueDepth is the queue_depth gauge.
func (m *PodModel) QueueDepth() float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.queueDepth
}

// Usage integrates up to now and returns the counters and current rates.
func (m *PodModel) Usage(now time.Time) PodUsage {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.advanceLocked(now)
	rps := m.window.rate()
	u := PodUsage{Time: now, RPS: rps, Requests: m.requests, Containers: make([]ContainerUsage, len(m.names))}
	cpu, mem := m.ratesLocked(rps)
	for i, n := range m.names {
		u.Containers[i] = ContainerUsage{Name: n, CPUSeconds: m.cpuSeconds[i], Rate: Rate{CPUCores: cpu, MemoryBytes: mem}}
	}
	return u
}

// ratesLocked gives every container the same rate: the load and the extra CPU are
// split evenly, the base is per container.
func (m *PodModel) ratesLocked(rps float64) (cpu, mem float64) {
	n := float64(len(m.names))
	share := rps / n
	cpu = m.params.CPUBase + m.params.CPUPerRequest*share + m.extraCPU/n
	mem = m.params.MemoryBytes + MemoryPerRPS*share
	return cpu, mem
}

// advanceLocked integrates CPU from m.last to now. The rate only changes when a
// request leaves the window (or at calls that change it, which advance first), so
// stepping from one departure to the next makes the counter exact rather than
// sampled, and no background ticker is needed: a reading integrates on demand. A
// clock that went back leaves the counters where they are.
func (m *PodModel) advanceLocked(now time.Time) {
	end := now.UnixNano()
	for m.last < end {
		m.window.expire(m.last)
		next := end
		if e, ok := m.window.nextExpiry(); ok && e < next {
			next = e
		}
		cpu, _ := m.ratesLocked(m.window.rate())
		dt := float64(next-m.last) / 1e9
		for i := range m.cpuSeconds {
			m.cpuSeconds[i] += cpu * dt
		}
		m.last = next
	}
	m.window.expire(max(end, m.last))
}
