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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
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
	server                     *http.Server
	stopping                   atomic.Bool
}

// Key is namespace/name.
func (p *Pod) Key() string { return p.Namespace + "/" + p.Name }

// podHandler serves the load target and the pod's own /metrics. Any path other
// than /metrics counts as one request, whatever the method, as podinfo does.
func podHandler(m *PodModel, clk clock.PassiveClock) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	err := errors.Join(
		reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "Requests this pod has served (excluding /metrics).",
		}, func() float64 { return float64(m.Requests()) })),
		reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "queue_depth", Help: "Simulated work queue length, set through the control API.",
		}, m.QueueDepth)),
	)
	if err != nil {
		return nil, fmt.Errorf("register pod metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		// Text 0.0.4 whatever the Accept header says, so every scraper sees the same
		// bytes a plain exporter would send.
		fams, err := reg.Gather()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		format := expfmt.NewFormat(expfmt.TypeTextPlain)
		w.Header().Set("Content-Type", string(format))
		enc := expfmt.NewEncoder(w, format)
		for _, f := range fams {
			if err := enc.Encode(f); err != nil {
				return // the client went away; nothing to tell it
			}
		}
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		m.ServeRequest(clk.Now())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux, nil
}

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
	if err := p.server.Shutdown(ctx); err != nil {
		return errors.Join(err, p.server.Close())
	}
	return nil
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
