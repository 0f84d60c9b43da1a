package env

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
)

// GatewayAPIs are the API versions the gateway serves on its one port and
// certificate, each registered as an APIService behind the aggregator.
func GatewayAPIs() []schema.GroupVersion {
	return []schema.GroupVersion{
		{Group: "metrics.k8s.io", Version: "v1"},
		{Group: "metrics.k8s.io", Version: "v1beta1"},
		{Group: "custom.metrics.k8s.io", Version: "v1beta1"},
		{Group: "custom.metrics.k8s.io", Version: "v1beta2"},
		{Group: "external.metrics.k8s.io", Version: "v1beta1"},
	}
}

// Gateway is the metrics-gateway process under test.
type Gateway struct {
	Port int
	// PagesURL is the plain-HTTP loopback listener
	// (--query-api-insecure-bind-address): the query API, the autoscaling
	// page and the explain endpoint without authentication, as a user
	// reaches them through kubectl port-forward.
	PagesURL    string
	StoragePath string
	CABundle    []byte
	// ConfigFile is the GatewayConfig passed as --config: the annotated-pod
	// job scraping every Resolution.
	ConfigFile string
	// AdapterConfigFile, when set, is passed as --adapter-config; empty runs
	// the zero-config rules. Restart changes it.
	AdapterConfigFile string
	// managedCert, when set, starts the gateway without --tls-cert-file:
	// it manages its own serving certificate (RestartWithManagedCertReplicas).
	managedCert []string
	// fixed are the arguments every start shares.
	fixed []string
	// serverName is the name Get verifies (the harness's Service's when
	// empty), and certSecret the namespace and name of the Secret a
	// gateway managing its certificate keeps its CA in (the harness's when
	// empty).
	serverName string
	certSecret [2]string
	proc       *Command
	env        *Env
}

// GatewayOptions say how NewGateway runs a gateway.
type GatewayOptions struct {
	// Name names the process and its log (default metrics-gateway).
	Name string
	// Bin is the gateway binary (default Options.GatewayBin).
	Bin string
	// StoragePath is --storage-path (default Dir/<Name>-data).
	StoragePath string
	// Config is the GatewayConfig passed as --config; nil passes none.
	Config []byte
	// Resolution is --metric-resolution (default Options.Resolution).
	Resolution time.Duration
	// Verbosity is --v.
	Verbosity int
	// Args are more flags.
	Args []string
	// Cgroup, when set, is the memory cgroup the gateway runs in.
	Cgroup *MemoryCgroup
}

// NewGateway prepares a gateway as manifests/base runs one: as its
// ServiceAccount with exactly its RBAC (applied from the manifests), giving
// kubelets tokens of its read-only kubelet ServiceAccount, serving on a free
// port of 127.0.0.1 with a certificate of the cluster CA for the Service's
// name, at the environment's resolution. It is not started.
func (e *Env) NewGateway(ctx context.Context, o GatewayOptions) (*Gateway, error) {
	o.Name = cmp.Or(o.Name, "metrics-gateway")
	o.StoragePath = cmp.Or(o.StoragePath, filepath.Join(e.Dir, o.Name+"-data"))
	if e.gatewayKubeconfig == "" {
		kubeconfig, err := e.gatewayServiceAccount(ctx)
		if err != nil {
			return nil, fmt.Errorf("gateway credentials: %w", err)
		}
		e.gatewayKubeconfig = kubeconfig
	}
	kubeconfig := e.gatewayKubeconfig
	certFile, keyFile, caBundle, err := e.Cluster.GatewayServingCert()
	if err != nil {
		return nil, fmt.Errorf("gateway serving cert: %w", err)
	}
	port, err := cluster.FreePort()
	if err != nil {
		return nil, err
	}
	pagesPort, err := cluster.FreePort()
	if err != nil {
		return nil, err
	}
	pagesAddr := fmt.Sprintf("127.0.0.1:%d", pagesPort)
	g := &Gateway{Port: port, PagesURL: "http://" + pagesAddr, StoragePath: o.StoragePath, CABundle: caBundle, env: e}
	if o.Config != nil {
		g.ConfigFile = filepath.Join(e.Dir, o.Name+"-config.yaml")
		if err := os.WriteFile(g.ConfigFile, o.Config, 0o644); err != nil {
			return nil, err
		}
	}
	g.fixed = []string{
		"--kubeconfig", kubeconfig,
		"--bind-address", "127.0.0.1", "--secure-port", fmt.Sprint(port),
		"--tls-cert-file", certFile, "--tls-private-key-file", keyFile,
		"--storage-path", g.StoragePath,
		"--metric-resolution", cmp.Or(o.Resolution, e.Resolution).String(),
		"--kubelet-use-node-status-port",
		"--kubelet-preferred-address-types", "InternalIP",
		"--kubelet-certificate-authority", e.KubeletCA,
		// As manifests/base: kubelets get tokens of the read-only
		// ServiceAccount, which the simulated kubelets review with the
		// API server as a kubelet in webhook mode does.
		"--kubelet-service-account", KubeletServiceAccount,
		"--query-api-insecure-bind-address", pagesAddr,
		"--v", fmt.Sprint(o.Verbosity),
	}
	// The replay of each HPA assumes the cluster's controller settings.
	for _, f := range e.Cluster.HPAControllerFlags() {
		g.fixed = append(g.fixed, "--hpa-"+strings.TrimPrefix(f, "--"))
	}
	if g.ConfigFile != "" {
		g.fixed = append(g.fixed, "--config", g.ConfigFile)
	}
	g.fixed = append(g.fixed, o.Args...)
	g.proc = &Command{Name: o.Name, Path: cmp.Or(o.Bin, e.GatewayBin), LogPath: filepath.Join(e.Dir, o.Name+".log"), Detach: e.Detach, Args: g.args(), Cgroup: o.Cgroup}
	return g, nil
}

// Command is how the gateway is started, for a caller that starts and
// measures it itself (the benchmark).
func (g *Gateway) Command() *Command { return g.proc }

// startGateway starts the environment's gateway (as its ServiceAccount:
// every scenario then shows manifests/base's RBAC is sufficient) and points
// every APIService it serves at it.
func (e *Env) startGateway(ctx context.Context) error {
	g, err := e.NewGateway(ctx, GatewayOptions{
		StoragePath: filepath.Join(e.Dir, "gateway-data"), Config: gatewayConfig(e.Resolution), Verbosity: 2, Cgroup: e.GatewayCgroup,
	})
	if err != nil {
		return err
	}
	e.Gateway = g
	start := time.Now()
	if err := g.Start(ctx); err != nil {
		return err
	}
	var names []string
	for _, gv := range GatewayAPIs() {
		if err := e.Cluster.RegisterAPIService(ctx, gv.Group, gv.Version, g.Port, g.CABundle); err != nil {
			return err
		}
		names = append(names, gv.Version+"."+gv.Group)
	}
	for _, n := range names {
		if err := e.Cluster.WaitAPIServiceAvailable(ctx, n); err != nil {
			return err
		}
	}
	e.progress("metrics-gateway serving on 127.0.0.1:%d, %s Available (%.1fs)", g.Port, strings.Join(names, ", "), time.Since(start).Seconds())
	return nil
}

// gatewayConfig is the --config file: pods annotated prometheus.io/scrape
// are scraped as often as kubelets, so custom and resource metrics have the
// same freshness, and the kubelets' cAdvisor is scraped too, for the
// dashboards that read it. Limits and the head-series cap keep their defaults, which
// the hostile-target tests rely on.
func gatewayConfig(interval time.Duration) []byte {
	return []byte(fmt.Sprintf(`apiVersion: metrics-gateway.io/v1alpha1
kind: GatewayConfig
pods:
  scrapeInterval: %dms
cadvisor:
  enabled: true
`, interval.Milliseconds()))
}

func (g *Gateway) args() []string {
	var args []string
	for i := 0; i < len(g.fixed); i++ {
		if g.managedCert != nil && (g.fixed[i] == "--tls-cert-file" || g.fixed[i] == "--tls-private-key-file") {
			i++ // and its value
			continue
		}
		args = append(args, g.fixed[i])
	}
	args = append(args, g.managedCert...)
	if g.AdapterConfigFile != "" {
		args = append(args, "--adapter-config", g.AdapterConfigFile)
	}
	return args
}

// Start starts the gateway (again, after Kill) on the same port and
// storage, and waits until it is live.
func (g *Gateway) Start(ctx context.Context) error {
	if err := g.proc.Start(); err != nil {
		return err
	}
	return g.waitLive(ctx)
}

// waitLive waits until the started gateway answers /livez.
func (g *Gateway) waitLive(ctx context.Context) error {
	return poll(ctx, 60*time.Second, "gateway /livez", func() error {
		if g.proc.Exited() {
			return cluster.StopPoll{Err: fmt.Errorf("metrics-gateway exited:\n%s", g.proc.Tail(30))}
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

// Restart stops the gateway gracefully and starts it on the same port and
// storage with adapterConfig (a prometheus-adapter rules file) as its
// --adapter-config, or on the zero-config rules when adapterConfig is
// empty. It returns once every API the gateway serves answers through the
// aggregator again.
func (g *Gateway) Restart(ctx context.Context, adapterConfig string) error {
	g.AdapterConfigFile = ""
	if adapterConfig != "" {
		g.AdapterConfigFile = filepath.Join(g.env.Dir, "adapter-config.yaml")
		if err := os.WriteFile(g.AdapterConfigFile, []byte(adapterConfig), 0o644); err != nil {
			return err
		}
	}
	return g.restart(ctx)
}

// restart stops the gateway gracefully, starts it with the arguments as
// they now are, and waits until every API answers through the aggregator.
func (g *Gateway) restart(ctx context.Context) error {
	if err := g.proc.Stop(); err != nil {
		return fmt.Errorf("stop gateway: %w", err)
	}
	g.proc.Args = g.args()
	if err := g.Start(ctx); err != nil {
		return err
	}
	return g.env.WaitAPIsServed(ctx, 2*time.Minute)
}

// ServingCertSecret is where the gateway keeps its self-managed serving
// certificate.
const ServingCertSecret = "metrics-gateway-serving-cert"

// RestartWithManagedCertReplicas restarts the gateway without the
// certificate env issued, as two replicas, as the ha overlay runs them:
// each fills or loads the CA and serving certificate in Secret
// kube-system/metrics-gateway-serving-cert, sets the caBundle of the
// APIServices and renews the certificate renewBefore ahead of its
// validity; from then on Get trusts the CA in that Secret. It stops the
// gateway, puts the Secret back as manifests/base ships it (empty), and
// starts the gateway and the second replica at the same moment, so both
// race to fill it. The replica has
// its own port, storage and certificate directory, and the gateway's
// ServiceAccount, flags and Secret; the APIServices keep pointing at the
// gateway. It returns the replica once both are live and every API
// answers through the aggregator; the caller stops it.
func (g *Gateway) RestartWithManagedCertReplicas(ctx context.Context, validity, renewBefore time.Duration) (*Gateway, error) {
	managed := func(dir string) []string {
		return []string{
			"--serving-cert-namespace", cluster.GatewayServiceNamespace,
			"--cert-dir", filepath.Join(g.env.Dir, dir),
			"--serving-cert-validity", validity.String(),
			"--serving-cert-renew-before", renewBefore.String(),
		}
	}
	r, err := g.newReplica("metrics-gateway-2", "gateway-2-data", managed("gateway-2-serving-cert"))
	if err != nil {
		return nil, err
	}
	if err := g.proc.Stop(); err != nil {
		return nil, fmt.Errorf("stop gateway: %w", err)
	}
	// Back to the Secret as manifests/base ships it, empty: the gateway
	// may not create one.
	err = g.env.Client.CoreV1().Secrets(cluster.GatewayServiceNamespace).Delete(ctx, ServingCertSecret, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("delete the serving-certificate Secret: %w", err)
	}
	if _, err := g.env.Kubectl(ctx, "apply", "-f", g.env.baseObjectsFile()); err != nil {
		return nil, fmt.Errorf("re-apply manifests/base's empty serving-certificate Secret: %w", err)
	}
	g.managedCert = managed("gateway-serving-cert")
	g.proc.Args = g.args()
	if err := g.proc.Start(); err != nil {
		return nil, err
	}
	if err := r.proc.Start(); err != nil {
		return nil, err
	}
	if err := r.waitLive(ctx); err != nil {
		_ = r.proc.Stop()
		return nil, fmt.Errorf("replica: %w", err)
	}
	if err := g.waitLive(ctx); err != nil {
		_ = r.proc.Stop()
		return nil, err
	}
	if err := g.env.WaitAPIsServed(ctx, 2*time.Minute); err != nil {
		_ = r.proc.Stop()
		return nil, err
	}
	return r, nil
}

// newReplica is a second gateway with g's flags, ServiceAccount and
// configuration but its own ports and storage (under env's Dir); with
// managedCert it manages its serving certificate with those flags,
// otherwise it serves g's. It is not started.
func (g *Gateway) newReplica(name, storageDir string, managedCert []string) (*Gateway, error) {
	port, err := cluster.FreePort()
	if err != nil {
		return nil, err
	}
	r := &Gateway{Port: port, StoragePath: filepath.Join(g.env.Dir, storageDir), CABundle: g.CABundle, ConfigFile: g.ConfigFile,
		AdapterConfigFile: g.AdapterConfigFile, managedCert: managedCert, env: g.env}
	for i := 0; i < len(g.fixed); i++ {
		a := g.fixed[i]
		r.fixed = append(r.fixed, a)
		switch {
		case a == "--secure-port" && i+1 < len(g.fixed):
			r.fixed = append(r.fixed, fmt.Sprint(port))
			i++
		case a == "--storage-path" && i+1 < len(g.fixed):
			r.fixed = append(r.fixed, r.StoragePath)
			i++
		case a == "--query-api-insecure-bind-address" && i+1 < len(g.fixed):
			pagesPort, err := cluster.FreePort()
			if err != nil {
				return nil, err
			}
			addr := fmt.Sprintf("127.0.0.1:%d", pagesPort)
			r.fixed, r.PagesURL = append(r.fixed, addr), "http://"+addr
			i++
		}
	}
	r.proc = &Command{Name: name, Path: g.proc.Path, LogPath: filepath.Join(g.env.Dir, name+".log"), Detach: g.proc.Detach, Args: r.args()}
	return r, nil
}

// StartReplica starts another replica beside the gateway, as the ha
// overlay runs two: same flags, ServiceAccount, configuration and serving
// certificate, its own port and fresh storage (named after name). With
// hostname set it runs under that hostname in a UTS namespace of its own,
// as in a pod (needs root); empty, it shares the machine's. The
// APIServices keep pointing at the gateway; Get reaches the replica
// directly. It returns once the replica is ready (/readyz); the caller
// stops it.
func (g *Gateway) StartReplica(ctx context.Context, name, hostname string) (*Gateway, error) {
	r, err := g.newReplica(name, name+"-data", nil)
	if err != nil {
		return nil, err
	}
	r.proc.Hostname = hostname
	if err := r.startReady(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// ScaleOutReplica says how StartScaleOutReplica runs a replica.
type ScaleOutReplica struct {
	// Name names the process, its log and storage; PodName is its
	// POD_NAME (its StatefulSet pod's: the shard comes from its ordinal).
	Name, PodName string
	// Config is its GatewayConfig (remoteWrite, queryBackend).
	Config []byte
	// AdapterConfigFile is its --adapter-config ("" for zero config).
	AdapterConfigFile string
	// Args are more flags (--shards).
	Args []string
}

// StartScaleOutReplica starts a replica beside the gateway as the
// scale-out overlay runs one: the gateway's flags with o's configuration,
// its own port, fresh storage and POD_NAME. It returns once the replica is
// ready; the caller stops it.
func (g *Gateway) StartScaleOutReplica(ctx context.Context, o ScaleOutReplica) (*Gateway, error) {
	r, err := g.newReplica(o.Name, o.Name+"-data", nil)
	if err != nil {
		return nil, err
	}
	r.ConfigFile = filepath.Join(g.env.Dir, o.Name+"-config.yaml")
	if err := os.WriteFile(r.ConfigFile, o.Config, 0o644); err != nil {
		return nil, err
	}
	for i := range r.fixed {
		if r.fixed[i] == "--config" && i+1 < len(r.fixed) {
			r.fixed[i+1] = r.ConfigFile
		}
	}
	r.fixed = append(r.fixed, o.Args...)
	r.AdapterConfigFile = o.AdapterConfigFile
	r.proc.Args = r.args()
	r.proc.Env = []string{"POD_NAME=" + o.PodName}
	if err := r.startReady(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// StartReady starts g again (after Kill) and waits until it is ready.
func (g *Gateway) StartReady(ctx context.Context) error { return g.startReady(ctx) }

// startReady starts g and waits until its /readyz answers 200; it stops g
// if that does not come within 2 minutes.
func (g *Gateway) startReady(ctx context.Context) error {
	if err := g.Start(ctx); err != nil {
		return err
	}
	if err := poll(ctx, 2*time.Minute, g.proc.Name+" /readyz", func() error {
		code, body, err := g.Get(ctx, "/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/readyz %d: %s", code, body)
		}
		return err
	}); err != nil {
		_ = g.Stop()
		return fmt.Errorf("%w; log:\n%s", err, g.LogTail(30))
	}
	return nil
}

// Stop ends the gateway gently.
func (g *Gateway) Stop() error { return g.proc.Stop() }

// caBundle is what Get trusts: env's CA, or the gateway's own once it
// manages its certificate.
func (g *Gateway) caBundle(ctx context.Context) ([]byte, error) {
	if g.managedCert == nil {
		return g.CABundle, nil
	}
	ns, name := cluster.GatewayServiceNamespace, ServingCertSecret
	if g.certSecret[1] != "" {
		ns, name = g.certSecret[0], g.certSecret[1]
	}
	s, err := g.env.Client.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("gateway's serving-certificate Secret: %w", err)
	}
	return s.Data["ca.crt"], nil
}

// WaitAPIsServed waits until the discovery document of every API the
// gateway serves comes back through the aggregator. After a restart this,
// not the APIService condition, says the gateway answers again: the
// condition can still read Available from before, or Unavailable until the
// aggregator's next check.
func (e *Env) WaitAPIsServed(ctx context.Context, timeout time.Duration) error {
	for _, gv := range GatewayAPIs() {
		path := "/apis/" + gv.String()
		if err := poll(ctx, timeout, "GET "+path, func() error {
			_, err := e.Client.Discovery().RESTClient().Get().AbsPath(path).DoRaw(ctx)
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// Kill ends the gateway with SIGKILL: no shutdown, no flush.
func (g *Gateway) Kill() error { return g.proc.Kill() }

// Terminate sends SIGTERM and waits up to grace, then SIGKILLs; it reports
// whether the gateway ended within grace.
func (g *Gateway) Terminate(grace time.Duration) (bool, error) {
	return g.proc.Terminate(grace)
}

// ExitErr is how the gateway ended ("signal: killed" after an OOM kill),
// nil while it runs.
func (g *Gateway) ExitErr() error { return g.proc.ExitErr() }

// PID is the running gateway's process id, 0 if none.
func (g *Gateway) PID() int { return g.proc.PID() }

// PeakRSS is the gateway process's peak resident set size since it started
// (VmHWM), which catches a spike between two looks at its current RSS.
func (g *Gateway) PeakRSS() (int64, error) { return g.procStatus("VmHWM") }

// RSS is the gateway process's resident set size now (VmRSS).
func (g *Gateway) RSS() (int64, error) { return g.procStatus("VmRSS") }

// procStatus reads a size in kB from /proc/<pid>/status, in bytes.
func (g *Gateway) procStatus(field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.PID()))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s %q: %w", field, v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, g.PID())
}

// Get fetches a path from the gateway directly, as the cluster admin (a
// client certificate the gateway authenticates through the cluster's CA).
func (g *Gateway) Get(ctx context.Context, path string) (int, string, error) {
	admin, err := g.env.Cluster.RESTConfig()
	if err != nil {
		return 0, "", err
	}
	cfg := rest.CopyConfig(admin)
	cfg.Host = fmt.Sprintf("https://127.0.0.1:%d", g.Port)
	ca, err := g.caBundle(ctx)
	if err != nil {
		return 0, "", err
	}
	cfg.TLSClientConfig.CAData, cfg.TLSClientConfig.CAFile = ca, ""
	cfg.TLSClientConfig.ServerName = cmp.Or(g.serverName, "metrics-gateway.kube-system.svc")
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

// LogPath is the gateway's log file, appended to across restarts.
func (g *Gateway) LogPath() string { return g.proc.LogPath }

// DoctorArgs are the flags `metrics-gateway doctor` needs to check this
// gateway as it would in the gateway's pod: the gateway's kubeconfig (its
// ServiceAccount's token) and its kubelet client flags.
func (g *Gateway) DoctorArgs() []string {
	withValue := map[string]bool{
		"--kubeconfig": true, "--kubelet-preferred-address-types": true, "--kubelet-certificate-authority": true,
		"--kubelet-client-certificate": true, "--kubelet-client-key": true, "--kubelet-service-account": true,
	}
	var args []string
	for i := 0; i < len(g.fixed); i++ {
		switch a := g.fixed[i]; {
		case withValue[a] && i+1 < len(g.fixed):
			args = append(args, a, g.fixed[i+1])
			i++
		case a == "--kubelet-use-node-status-port":
			args = append(args, a)
		}
	}
	return args
}

// Bin is the gateway binary, for its subcommands.
func (g *Gateway) Bin() string { return g.proc.Path }

// LogTail is the last n lines of the gateway's log.
func (g *Gateway) LogTail(n int) string { return g.proc.Tail(n) }
