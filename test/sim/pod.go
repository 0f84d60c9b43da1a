package sim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
)

// DefaultPodPort is served when a pod declares no TCP containerPort, podinfo's
// habit being the common case the tests copy.
const DefaultPodPort = 8080

// PodSpec is what the simulator needs to know about a pod; package kubeagent fills
// it from the API object.
type PodSpec struct {
	Namespace, Name, UID string
	Node                 string
	Containers           []string // spec.containers names, in order
	Ports                []int    // TCP containerPorts; empty means DefaultPodPort
	Annotations          map[string]string
	HostNetwork          bool
	// PreviousIP is the address the pod had before the simulator restarted; it is
	// kept when still free so the pod's status does not change under it.
	PreviousIP netip.Addr
	// Images and Limits are per container, in Containers' order; a shorter
	// slice leaves the rest at PauseImage and no limits. With QOSClass
	// (Guaranteed, Burstable or BestEffort; empty derives it from Limits)
	// they only shape /metrics/cadvisor.
	Images   []string
	Limits   []ContainerLimits
	QOSClass string
}

// ContainerLimits are a container's resource limits; zero is none.
type ContainerLimits struct {
	CPUCores    float64
	MemoryBytes float64
}

// Key is namespace/name.
func (s PodSpec) Key() string { return s.Namespace + "/" + s.Name }

// Pod is a running simulated pod. Its fields are fixed once started.
type Pod struct {
	Namespace, Name, UID, Node string
	IP                         netip.Addr
	HostIP                     netip.Addr // the node's
	Ports                      []int
	Model                      *PodModel
	pooled                     bool // IP came from the pod pool
	cgroups                    podCgroups
	server                     *http.Server
	listeners                  []net.Listener
	stopping                   atomic.Bool
}

// Key is namespace/name.
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// serve opens every port on the pod's IP. All listeners are open before it
// returns, so the pod is reachable once it is reported Running.
func (p *Pod) serve(h http.Handler) error {
	var ls []net.Listener
	for _, port := range p.Ports {
		addr := net.JoinHostPort(p.IP.String(), strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, o := range ls {
				_ = o.Close()
			}
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		ls = append(ls, l)
	}
	p.server = &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	p.listeners = ls
	for _, l := range ls {
		go func() {
			if err := p.server.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				klog.ErrorS(err, "Pod server stopped", "pod", klog.KRef(p.Namespace, p.Name), "addr", l.Addr().String())
			}
		}()
	}
	return nil
}

// stop closes the listeners, giving in-flight requests a moment to finish.
func (p *Pod) stop() error {
	if p.server == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := p.server.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, p.server.Close())
	}
	// Shutdown closes only the listeners Serve has taken up; one whose Serve
	// goroutine has not started yet would stay open a moment longer.
	for _, l := range p.listeners {
		_ = l.Close()
	}
	return err
}

// uniquePorts drops duplicates and fills in the default.
func uniquePorts(ports []int) []int {
	seen := map[int]bool{}
	var out []int
	for _, p := range ports {
		if p > 0 && p < 65536 && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = []int{DefaultPodPort}
	}
	return out
}

// podSet indexes running pods by key. Goroutine-safe.
type podSet struct {
	mu   sync.Mutex
	pods map[string]*Pod
}

func (s *podSet) get(key string) *Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pods[key]
}

func (s *podSet) all() []*Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Pod, 0, len(s.pods))
	for _, p := range s.pods {
		out = append(out, p)
	}
	return out
}
