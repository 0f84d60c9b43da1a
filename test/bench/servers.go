package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	"k8s.io/client-go/rest"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
	"github.com/metrics-gateway/metrics-gateway/test/env"
)

// Kind names a server under test.
type Kind string

// The servers.
const (
	MetricsServer Kind = "metrics-server"
	Gateway       Kind = "metrics-gateway"
	Prometheus    Kind = "prometheus"
)

// Server is one running server under test.
type Server struct {
	Kind Kind
	Port int
	Dir  string
	proc *env.Command
	w    *World
	// direct is an admin client for the server's own port, verifying its
	// serving certificate as the aggregator does.
	direct *http.Client
	base   string
}

// PID is the server's process id.
func (s *Server) PID() int { return s.proc.PID() }

// Tools are the binaries the servers run from.
type Tools struct {
	MetricsServer, Gateway, Prometheus, BenchTool string
}

// StartServer starts kind against w with matching settings: 15 s (resolution),
// kubelets reached by InternalIP on the node status port, verified against the
// simulators' CA; serving on 127.0.0.1 with the cluster-signed certificate the
// APIService trusts. The gateway runs as env runs it, as installed: the
// ServiceAccount and RBAC of manifests/base, kubelet tokens of its read-only
// account. metrics-server and Prometheus get what metrics-server's manifests
// grant (cluster.GatewayCredentials), with a client certificate kubelets
// trust.
func (w *World) StartServer(ctx context.Context, kind Kind, t Tools, resolution time.Duration, prefill time.Duration) (*Server, error) {
	dir, err := os.MkdirTemp(w.Dir, string(kind)+"-")
	if err != nil {
		return nil, err
	}
	s := &Server{Kind: kind, Dir: dir, w: w}
	switch kind {
	case MetricsServer, Prometheus:
		err = s.command(ctx, t, resolution)
	case Gateway:
		err = s.gatewayCommand(ctx, t, resolution, prefill)
	default:
		err = fmt.Errorf("unknown server %q", kind)
	}
	if err != nil {
		return nil, err
	}
	return s, s.start(ctx)
}

// start runs s's command from disk and waits until it is live.
func (s *Server) start(ctx context.Context) error {
	s.proc.StopGrace = 30 * time.Second
	if err := evictPageCache(s.proc.Path); err != nil {
		return err
	}
	if err := s.proc.Start(); err != nil {
		return err
	}
	if err := s.client(); err != nil {
		return errors.Join(err, s.Stop())
	}
	if err := s.waitLive(ctx); err != nil {
		return errors.Join(err, s.Stop())
	}
	return nil
}

// gatewayCommand is the gateway as env starts it, on the world's resolution,
// with the annotated-pod job's defaults (no --config), on prefilled storage
// when prefill is set.
func (s *Server) gatewayCommand(ctx context.Context, t Tools, resolution, prefill time.Duration) error {
	storage := filepath.Join(s.Dir, "data")
	if prefill > 0 {
		if err := s.w.prefill(ctx, t.BenchTool, storage, prefill, resolution); err != nil {
			return err
		}
	}
	g, err := s.w.Env.NewGateway(ctx, env.GatewayOptions{
		Bin: t.Gateway, StoragePath: storage, Resolution: resolution, Verbosity: 1, Args: []string{"--cert-dir", s.Dir},
	})
	if err != nil {
		return err
	}
	s.Port, s.proc = g.Port, g.Command()
	s.proc.LogPath = filepath.Join(s.Dir, string(s.Kind)+".log")
	return nil
}

// command is metrics-server's or Prometheus' command line.
func (s *Server) command(ctx context.Context, t Tools, resolution time.Duration) error {
	port, err := cluster.FreePort()
	if err != nil {
		return err
	}
	s.Port = port
	kubeconfig, err := s.w.Cluster.GatewayCredentials("bench-" + string(s.Kind))
	if err != nil {
		return fmt.Errorf("credentials for %s: %w", s.Kind, err)
	}
	s.proc = &env.Command{Name: string(s.Kind), LogPath: filepath.Join(s.Dir, string(s.Kind)+".log")}
	if s.Kind == Prometheus {
		cfg := filepath.Join(s.Dir, "prometheus.yml")
		out, err := exec.CommandContext(ctx, t.BenchTool, "prom-config", "--kubeconfig", kubeconfig,
			"--kubelet-certificate-authority", s.w.KubeletCA, "--metric-resolution", resolution.String()).Output()
		if err != nil {
			return fmt.Errorf("benchtool prom-config: %w", exitErr(err))
		}
		if err := os.WriteFile(cfg, out, 0o644); err != nil {
			return err
		}
		s.proc.Path, s.proc.Args = t.Prometheus, []string{
			"--config.file", cfg, "--storage.tsdb.path", filepath.Join(s.Dir, "data"),
			"--web.listen-address", fmt.Sprintf("127.0.0.1:%d", port), "--log.level", "warn",
			"--storage.tsdb.retention.time", "6h",
		}
		return nil
	}
	certFile, keyFile, _, err := s.w.Cluster.GatewayServingCert()
	if err != nil {
		return err
	}
	s.proc.Path, s.proc.Args = t.MetricsServer, []string{
		"--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig, "--authorization-kubeconfig", kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(port),
		"--tls-cert-file", certFile, "--tls-private-key-file", keyFile, "--cert-dir", s.Dir,
		"--metric-resolution", resolution.String(),
		"--kubelet-use-node-status-port", "--kubelet-preferred-address-types", "InternalIP",
		"--kubelet-certificate-authority", s.w.KubeletCA,
		"--v", "1",
	}
	return nil
}

// evictPageCache drops the clean page-cache pages of the binary at path, so
// that every server maps its binary fresh from disk. Without it, how the file
// entered the page cache decided part of the resident size: the gateway's
// binary, just written by the linker, sat in 2 MB folios that the kernel
// maps whole (FilePmdMapped 16-22 MB), the copied metrics-server binary in
// 4 kB pages.
func evictPageCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("evicting %s from the page cache: %w", path, err)
	}
	return nil
}

func exitErr(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%w: %s", err, ee.Stderr)
	}
	return err
}

func (s *Server) client() error {
	if s.Kind == Prometheus {
		s.direct, s.base = &http.Client{Timeout: 60 * time.Second}, fmt.Sprintf("http://127.0.0.1:%d", s.Port)
		return nil
	}
	admin, err := s.w.Cluster.RESTConfig()
	if err != nil {
		return err
	}
	_, _, caBundle, err := s.w.Cluster.GatewayServingCert()
	if err != nil {
		return err
	}
	cfg := rest.CopyConfig(admin)
	cfg.Host = fmt.Sprintf("https://127.0.0.1:%d", s.Port)
	cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CAFile = caBundle, ""
	cfg.TLSClientConfig.ServerName = cluster.GatewayServiceName + "." + cluster.GatewayServiceNamespace + ".svc"
	c, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	c.Timeout = 60 * time.Second
	s.direct, s.base = c, cfg.Host
	return nil
}

func (s *Server) waitLive(ctx context.Context) error {
	path := "/livez"
	if s.Kind == Prometheus {
		path = "/-/ready"
	}
	return cluster.Poll(ctx, 500*time.Millisecond, 2*time.Minute, string(s.Kind)+" "+path, func() error {
		if s.proc.Exited() {
			// The log's directory is removed when the run ends: say
			// what it ended with here.
			return cluster.StopPoll{Err: fmt.Errorf("%s exited; the end of %s:\n%s", s.Kind, s.LogPath(), s.proc.Tail(30))}
		}
		code, _, err := s.Get(ctx, path)
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("%s %d", path, code)
		}
		return err
	})
}

// Get fetches path from the server directly.
func (s *Server) Get(ctx context.Context, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.direct.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// Register points the APIServices at this server, deleting them first so that
// Available is about this server and not the previous one.
func (s *Server) Register(ctx context.Context, gvs ...[2]string) error {
	_, _, caBundle, err := s.w.Cluster.GatewayServingCert()
	if err != nil {
		return err
	}
	for _, gv := range gvs {
		if err := s.w.Cluster.RegisterAPIService(ctx, gv[0], gv[1], s.Port, caBundle); err != nil {
			return err
		}
	}
	for _, gv := range gvs {
		if err := s.w.Cluster.WaitAPIServiceAvailable(ctx, gv[1]+"."+gv[0]); err != nil {
			return err
		}
	}
	return nil
}

// Stop ends the server.
func (s *Server) Stop() error { return s.proc.Stop() }

// LogPath is the server's log.
func (s *Server) LogPath() string { return s.proc.LogPath }

// Metric reads the first sample of name (with every label in match) from the
// server's /metrics.
func (s *Server) Metric(ctx context.Context, name string, match ...string) (float64, error) {
	code, body, err := s.Get(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("/metrics: %d", code)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		ok := true
		for _, m := range match {
			ok = ok && strings.Contains(line, m)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		var v float64
		if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
			return v, nil
		}
	}
	return 0, fmt.Errorf("%s not in /metrics", name)
}
