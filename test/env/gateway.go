package env

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
)

// Gateway is the metrics-gateway process under test.
type Gateway struct {
	Port        int
	StoragePath string
	CABundle    []byte
	proc        *proc
	env         *Env
}

func (e *Env) startGateway(ctx context.Context) error {
	kubeconfig, err := e.Cluster.GatewayCredentials("")
	if err != nil {
		return fmt.Errorf("gateway credentials: %w", err)
	}
	certFile, keyFile, caBundle, err := e.Cluster.GatewayServingCert()
	if err != nil {
		return fmt.Errorf("gateway serving cert: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	g := &Gateway{Port: port, StoragePath: filepath.Join(e.Dir, "gateway-data"), CABundle: caBundle, env: e}
	g.proc = &proc{name: "metrics-gateway", path: e.GatewayBin, logPath: filepath.Join(e.Dir, "metrics-gateway.log"), detach: e.Detach, args: []string{
		"--kubeconfig", kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(port),
		"--tls-cert-file", certFile, "--tls-private-key-file", keyFile,
		"--storage-path", g.StoragePath,
		"--metric-resolution", e.Resolution.String(),
		"--kubelet-use-node-status-port",
		"--kubelet-preferred-address-types", "InternalIP",
		"--kubelet-certificate-authority", filepath.Join(e.Dir, "sim", "ca.crt"),
		"--v", "2",
	}}
	e.Gateway = g
	start := time.Now()
	if err := g.Start(ctx); err != nil {
		return err
	}
	if err := e.Cluster.RegisterAPIService(ctx, "metrics.k8s.io", "v1beta1", port, caBundle); err != nil {
		return err
	}
	if err := e.Cluster.WaitAPIServiceAvailable(ctx, "v1beta1.metrics.k8s.io"); err != nil {
		return err
	}
	e.progress("metrics-gateway serving on 127.0.0.1:%d, v1beta1.metrics.k8s.io Available (%.1fs)", port, time.Since(start).Seconds())
	return nil
}

// Start starts the gateway (again, after Kill) on the same port and
// storage, and waits until it is live.
func (g *Gateway) Start(ctx context.Context) error {
	if err := g.proc.start(); err != nil {
		return err
	}
	return poll(ctx, 60*time.Second, "gateway /livez", func() error {
		if g.proc.exited() {
			return errStop{fmt.Errorf("metrics-gateway exited:\n%s", g.proc.tail(30))}
		}
		code, body, err := g.Get(ctx, "/livez")
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("/livez %d: %s", code, body)
		}
		return nil
	})
}

// Kill ends the gateway with SIGKILL: no shutdown, no flush.
func (g *Gateway) Kill() error { return g.proc.kill() }

// Get fetches a path from the gateway directly, as the cluster admin (a
// client certificate the gateway authenticates through the cluster's CA).
func (g *Gateway) Get(ctx context.Context, path string) (int, string, error) {
	admin, err := g.env.Cluster.RESTConfig()
	if err != nil {
		return 0, "", err
	}
	cfg := rest.CopyConfig(admin)
	cfg.Host = fmt.Sprintf("https://127.0.0.1:%d", g.Port)
	cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CAFile = g.CABundle, ""
	cfg.TLSClientConfig.ServerName = "metrics-gateway.kube-system.svc"
	c, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return 0, "", err
	}
	c.Timeout = 10 * time.Second
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
