package env

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
)

// InstalledGateway names what an install (the Helm chart, into a namespace
// of its own) put in the cluster for one gateway: its ServiceAccount, the
// container's arguments and --config file, its Service and certificate
// Secret.
type InstalledGateway struct {
	// Name names the process and its directory under the env's Dir.
	Name string
	// Namespace and ServiceAccount are whose token the gateway runs with.
	Namespace, ServiceAccount string
	// Args are the container's arguments. The local process replaces
	// --secure-port, --cert-dir, --storage-path and --config with its own
	// and adds what running outside the pod needs (kubeconfig, loopback
	// address, the simulated kubelets' CA, the Secret's namespace).
	Args []string
	// Config is the content of the --config file (the install's ConfigMap).
	Config []byte
	// Service and Secret are the install's Service and serving-certificate
	// Secret, which the gateway fills (it manages its certificate).
	Service, Secret string
}

// StartInstalled runs the gateway an install describes as a local process,
// with exactly the install's RBAC (a token of its ServiceAccount) and
// arguments, on its own port and storage, not behind the APIServices. It
// returns once /readyz answers 200: informers synced and every kubelet
// scraped twice with the install's kubelet account's token. The caller
// stops it.
func (e *Env) StartInstalled(ctx context.Context, o InstalledGateway) (*Gateway, error) {
	kubeconfig, err := e.serviceAccountKubeconfig(ctx, o.Namespace, o.ServiceAccount, time.Hour)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.Dir, o.Name)
	if err := os.MkdirAll(filepath.Join(dir, "certs"), 0o755); err != nil {
		return nil, err
	}
	configFile := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configFile, o.Config, 0o644); err != nil {
		return nil, err
	}
	port, err := cluster.FreePort()
	if err != nil {
		return nil, err
	}
	g := &Gateway{Port: port, StoragePath: filepath.Join(dir, "data"), ConfigFile: configFile, managedCert: []string{},
		serverName: o.Service + "." + o.Namespace + ".svc", certSecret: [2]string{o.Namespace, o.Secret}, env: e}
	local := map[string]bool{"--secure-port": true, "--cert-dir": true, "--storage-path": true, "--config": true}
	for _, a := range o.Args {
		if name, _, _ := strings.Cut(a, "="); !local[name] {
			g.fixed = append(g.fixed, a)
		}
	}
	g.fixed = append(g.fixed,
		"--kubeconfig", kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(port),
		"--cert-dir", filepath.Join(dir, "certs"),
		"--storage-path", g.StoragePath,
		"--config", configFile,
		"--kubelet-certificate-authority", e.KubeletCA,
		"--serving-cert-namespace", o.Namespace,
		"--v", "2",
	)
	g.proc = &Command{Name: o.Name, Path: e.GatewayBin, LogPath: filepath.Join(e.Dir, o.Name+".log"), Detach: e.Detach, Args: g.args()}
	if err := g.startReady(ctx); err != nil {
		return nil, err
	}
	return g, nil
}
