package sim

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	cadvisormetrics "github.com/google/cadvisor/lib/metrics"
	cadvisorapi "github.com/google/cadvisor/lib/model"
	"k8s.io/component-base/metrics"
	"k8s.io/klog/v2"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/kubernetes/pkg/kubelet/metrics/collectors"
	"k8s.io/kubernetes/pkg/kubelet/server/stats"
)

// garbageBody is served in ModeGarbage: a 200 whose body fails the Prometheus text
// parser on its first line, the way a proxy's HTML error page would.
const garbageBody = "<html><body>this is {not} prometheus text\n\x00\x01\n"

// summaryProvider adapts a Node to what the kubelet's collector reads. It takes
// a fresh snapshot per call, so the exposition timestamps are the scrape time and
// the counters are exact at that time.
type summaryProvider struct {
	node *Node
	sim  *Sim
}

var _ stats.SummaryProvider = (*summaryProvider)(nil)

func (p *summaryProvider) Get(context.Context, bool) (*statsv1alpha1.Summary, error) {
	return p.node.Summary(p.node.Snapshot(p.sim.clock.Now())), nil
}

func (p *summaryProvider) GetCPUAndMemoryStats(ctx context.Context) (*statsv1alpha1.Summary, error) {
	return p.Get(ctx, false)
}

// KubeletHandler serves one node's kubelet endpoints behind bearer-token checks:
// /metrics/resource through the kubelet's own collector and component-base's
// handler (as server.InstallAuthNotRequiredHandlers wires it in a real kubelet),
// /metrics/cadvisor through cAdvisor's collectors wired the same way, over
// the node's cgroups as cadvisor.go models them, /stats/summary and /healthz.
// Only /metrics/resource follows the node's Mode.
func (s *Sim) KubeletHandler(n *Node, token string) http.Handler {
	reg := metrics.NewKubeRegistry()
	reg.CustomMustRegister(collectors.NewResourceMetricsCollector(&summaryProvider{node: n, sim: s}))
	resource := metrics.HandlerFor(reg, metrics.HandlerOpts{ErrorHandling: metrics.ContinueOnError})

	cp := &cadvisorProvider{node: n, sim: s}
	creg := metrics.NewKubeRegistry()
	creg.RawMustRegister(
		cadvisormetrics.NewPrometheusMachineCollector(cp, cadvisorMetrics),
		cadvisormetrics.NewPrometheusCollector(cp, cadvisorLabels, cadvisorMetrics, collectorClock{s.clock},
			cadvisorapi.RequestOptions{IdType: cadvisorapi.TypeName, Count: 1, Recursive: true}),
	)
	cadvisor := metrics.HandlerFor(creg, metrics.HandlerOpts{ErrorHandling: metrics.ContinueOnError})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics/resource", func(w http.ResponseWriter, r *http.Request) {
		switch n.Mode() {
		case ModeGarbage:
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			_, _ = w.Write([]byte(garbageBody))
		case Mode500:
			http.Error(w, "simulated kubelet failure", http.StatusInternalServerError)
		case ModeHang:
			select {
			case <-r.Context().Done():
			case <-s.done:
			}
		default:
			resource.ServeHTTP(w, r)
		}
	})
	mux.Handle("GET /metrics/cadvisor", cadvisor)
	mux.HandleFunc("GET /stats/summary", func(w http.ResponseWriter, _ *http.Request) {
		sum := n.Summary(n.Snapshot(s.clock.Now()))
		w.Header().Set("Content-Type", "application/json")
		if err := json.NewEncoder(w).Encode(sum); err != nil {
			klog.ErrorS(err, "Writing stats summary", "node", n.Name)
		}
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	return requireToken(token, s.webhook, n.Name, mux)
}

// requireToken answers 401 unless the request carries the token, checked in
// constant time like any credential, or a client certificate that the TLS
// layer verified against the client CA (as a kubelet's --client-ca-file),
// or, with webhook set, any bearer token the API server says may get this
// node's metrics (403 when it authenticates but may not).
func requireToken(token string, webhook *WebhookAuth, node string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
			next.ServeHTTP(w, r)
			return
		}
		got := []byte(r.Header.Get("Authorization"))
		if token != "" && subtle.ConstantTimeCompare(got, want) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		if bearer, ok := strings.CutPrefix(string(got), "Bearer "); ok && webhook != nil && bearer != "" {
			if webhook.allow(r.Context(), bearer, node) {
				next.ServeHTTP(w, r)
				return
			}
			http.Error(w, "Forbidden", http.StatusForbidden)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="kubelet"`)
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	})
}

// SetWebhookAuth makes the kubelets, once served, also accept bearer tokens
// the API server authorizes (see WebhookAuth). Call it before ServeKubelets.
func (s *Sim) SetWebhookAuth(a *WebhookAuth) { s.webhook = a }

// kubeletServer is one node's HTTPS listener.
type kubeletServer struct {
	node   *Node
	server *http.Server
}

func (k *kubeletServer) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := k.server.Shutdown(ctx); err != nil {
		return fmt.Errorf("stop kubelet %s: %w", k.node.Name, errors.Join(err, k.server.Close()))
	}
	return nil
}

// ServeKubelets opens node-IP:port with TLS for every node. Every listener is open
// when it returns, or none is. clientCAs, when set, authenticates clients by
// certificate too, as a kubelet's --client-ca-file does.
func (s *Sim) ServeKubelets(port int, cert tls.Certificate, token string, clientCAs *x509.CertPool) error {
	if strings.TrimSpace(token) == "" {
		return errors.New("kubelet bearer token is empty")
	}
	tlsCfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		tlsCfg.ClientCAs, tlsCfg.ClientAuth = clientCAs, tls.VerifyClientCertIfGiven
	}
	var ls []net.Listener
	var servers []*kubeletServer
	for _, n := range s.Nodes() {
		addr := net.JoinHostPort(n.IP.String(), strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, o := range ls {
				_ = o.Close()
			}
			return fmt.Errorf("kubelet %s: listen %s: %w", n.Name, addr, err)
		}
		ls = append(ls, l)
		servers = append(servers, &kubeletServer{node: n, server: &http.Server{
			Handler: s.KubeletHandler(n, token), TLSConfig: tlsCfg, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: klogWriterLog("kubelet", n.Name),
		}})
	}
	for i, k := range servers {
		l := tls.NewListener(ls[i], tlsCfg)
		go func() {
			if err := k.server.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				klog.ErrorS(err, "Kubelet server stopped", "node", k.node.Name)
			}
		}()
		klog.InfoS("Serving kubelet", "node", k.node.Name, "addr", ls[i].Addr().String())
	}
	s.kubelets = append(s.kubelets, servers...)
	return nil
}

// klogWriterLog routes net/http's own messages (TLS handshake failures, mostly: a
// gateway that does not trust the CA shows up here) into klog with context.
func klogWriterLog(server, name string) *log.Logger {
	return log.New(logWriter{server: server, name: name}, "", 0)
}

type logWriter struct{ server, name string }

func (w logWriter) Write(b []byte) (int, error) {
	klog.InfoS("HTTP server message", "server", w.server, "name", w.name, "msg", strings.TrimSpace(string(b)))
	return len(b), nil
}
