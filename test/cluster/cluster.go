package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Options configure Start. Only Dir is required.
type Options struct {
	// Dir holds all state: pki/, etcd/, logs/, *.kubeconfig, pids, cluster.json. Start
	// clears those entries first; other files in Dir are left alone.
	Dir string
	// BinDir holds kube-apiserver, kube-controller-manager and kube-scheduler
	// (test/hack/build-control-plane.sh). Default: test/bin next to this package's source.
	BinDir string
	// EtcdPath defaults to BinDir/etcd (test/hack/build-etcd.sh builds it).
	EtcdPath string
	// HPA timings, short so scaling tests take minutes rather than the default quarter hour.
	HPASyncPeriod              time.Duration // default 5s
	HPADownscaleStabilization  time.Duration // default 30s
	HPAInitialReadinessDelay   time.Duration // default 5s
	HPACPUInitializationPeriod time.Duration // default 15s
	// Controllers for kube-controller-manager; default DefaultControllers.
	Controllers []string
	// Stdout receives progress lines. nil means os.Stdout: a silent start-up that hangs
	// for a minute is worse than a few lines of noise.
	Stdout io.Writer
	// Detach leaves the processes running after the caller exits (own session, no
	// Pdeathsig); only the CLI wants this. Stop them with Attach(dir).Stop().
	Detach bool
	// ComponentTimeout bounds each component's wait for readiness; default 3m, since a
	// cold kube-apiserver on two busy cores can take most of a minute.
	ComponentTimeout time.Duration
}

// Cluster is a running control plane. Its methods are safe to call from one goroutine
// at a time; tests normally hold one per package.
type Cluster struct {
	// Dir is Options.Dir, made absolute.
	Dir string
	// Kubeconfig is Dir/admin.kubeconfig: user admin in system:masters.
	Kubeconfig string
	// Host is the apiserver URL, https://127.0.0.1:<port>.
	Host  string
	Ports Ports

	layout layout
	out    io.Writer
	procs  []*Process
	// opts are Start's, kept for RestartAPIServer.
	opts Options
	// serving is set once GatewayServingCert has written its pair.
	servingMu sync.Mutex
	serving   bool
}

func (o *Options) complete() error {
	if o.Dir == "" {
		return errors.New("cluster: Options.Dir is required")
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	o.Dir = dir
	if o.BinDir == "" {
		o.BinDir = defaultBinDir()
	}
	if o.EtcdPath == "" {
		o.EtcdPath = filepath.Join(o.BinDir, etcdComponent)
	}
	setDefault(&o.HPASyncPeriod, 5*time.Second)
	setDefault(&o.HPADownscaleStabilization, 30*time.Second)
	setDefault(&o.HPAInitialReadinessDelay, 5*time.Second)
	setDefault(&o.HPACPUInitializationPeriod, 15*time.Second)
	setDefault(&o.ComponentTimeout, 3*time.Minute)
	if len(o.Controllers) == 0 {
		o.Controllers = DefaultControllers
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if _, err := os.Stat(o.EtcdPath); err != nil {
		return fmt.Errorf("cluster: etcd (run test/hack/build-etcd.sh or set Options.EtcdPath): %w", err)
	}
	for _, b := range []string{apiserverComponent, kcmComponent, schedComponent} {
		if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
			return fmt.Errorf("cluster: %s missing in %s (run test/hack/build-control-plane.sh): %w", b, o.BinDir, err)
		}
	}
	return nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d == 0 {
		*d = v
	}
}

// defaultBinDir is test/bin, found from this file's compile-time path so tests in any
// package of the test module work without configuration.
func defaultBinDir() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "bin"
	}
	return filepath.Join(filepath.Dir(file), "..", "bin")
}

// Start brings up etcd, kube-apiserver, kube-controller-manager and kube-scheduler on
// free loopback ports and returns once all are healthy and the default namespace's
// service account exists (pods cannot be admitted before it does). On failure it stops
// whatever it started and the error includes the tail of every log.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	if err := opts.complete(); err != nil {
		return nil, err
	}
	l := layout{dir: opts.Dir}
	if running, err := Attach(opts.Dir); err == nil && running.anyRunning() {
		return nil, fmt.Errorf("cluster: a control plane from %s is still running; stop it first", opts.Dir)
	}
	begin := time.Now()
	c := &Cluster{Dir: opts.Dir, Kubeconfig: l.kubeconfig(adminName), layout: l, out: opts.Stdout, opts: opts}
	if err := c.prepare(opts); err != nil {
		return nil, err
	}
	if err := c.startAll(ctx, opts); err != nil {
		stopErr := c.Stop()
		return nil, errors.Join(err, stopErr, fmt.Errorf("logs:\n%s", c.LogTails(30)))
	}
	c.progress("control plane ready in %s; KUBECONFIG=%s", since(begin), c.Kubeconfig)
	return c, nil
}

// prepare resets Dir and writes certificates, kubeconfigs and the chosen ports.
func (c *Cluster) prepare(opts Options) error {
	l := c.layout
	for _, p := range []string{l.pkiDir(), l.etcdData(), l.logDir(), l.pidsFile(), l.stateFile(),
		l.kubeconfig(adminName), l.kubeconfig(kcmComponent), l.kubeconfig(schedComponent)} {
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("reset %s: %w", p, err)
		}
	}
	if err := os.MkdirAll(l.logDir(), 0o755); err != nil {
		return err
	}
	start := time.Now()
	if err := generatePKI(l.pkiDir()); err != nil {
		return fmt.Errorf("generate certificates: %w", err)
	}
	c.progress("certificates written to %s (%s)", l.pkiDir(), since(start))

	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	c.Ports = Ports{EtcdClient: ports[0], EtcdPeer: ports[1], APIServer: ports[2],
		ControllerManager: ports[3], Scheduler: ports[4]}
	c.Host = fmt.Sprintf("https://127.0.0.1:%d", c.Ports.APIServer)

	for _, kc := range []struct{ file, user, leaf string }{
		{adminName, "admin", adminName},
		{kcmComponent, "system:kube-controller-manager", kcmClientName},
		{schedComponent, "system:kube-scheduler", schedulerClientName},
	} {
		if err := writeKubeconfigFromPKI(l.kubeconfig(kc.file), c.Host, kc.user, l.pkiDir(), kc.leaf); err != nil {
			return err
		}
	}
	return writeState(l, state{Ports: c.Ports, Host: c.Host, Detached: opts.Detach})
}

// startAll starts each component in dependency order and waits for it to be healthy
// before starting the next, so a failure names the component that caused it.
func (c *Cluster) startAll(ctx context.Context, opts Options) error {
	for _, s := range c.components(opts) {
		if _, err := c.launch(ctx, s, len(c.procs)); err != nil {
			return err
		}
	}
	start := time.Now()
	if err := c.waitDefaultServiceAccount(ctx, opts.ComponentTimeout); err != nil {
		return err
	}
	c.progress("default service account present (%s)", since(start))
	return nil
}

// component is one control-plane process and how to tell it is ready: url
// answers with want in its body, asked with the client certificate leaf
// ("" for none).
type component struct {
	name, path string
	args       []string
	url, want  string
	leaf       string
}

// components are the control plane in start order.
func (c *Cluster) components(opts Options) []component {
	l := c.layout
	return []component{
		{etcdComponent, opts.EtcdPath, etcdArgs(l, c.Ports),
			fmt.Sprintf("http://127.0.0.1:%d/health", c.Ports.EtcdClient), `"health":"true"`, ""},
		{apiserverComponent, filepath.Join(opts.BinDir, apiserverComponent), apiserverArgs(l, c.Ports),
			c.Host + "/readyz", "ok", adminName},
		{kcmComponent, filepath.Join(opts.BinDir, kcmComponent), controllerManagerArgs(l, c.Ports, opts),
			fmt.Sprintf("https://127.0.0.1:%d/healthz", c.Ports.ControllerManager), "ok", ""},
		{schedComponent, filepath.Join(opts.BinDir, schedComponent), schedulerArgs(l, c.Ports),
			fmt.Sprintf("https://127.0.0.1:%d/healthz", c.Ports.Scheduler), "ok", ""},
	}
}

// launch starts s, records it as c.procs[slot] (appending when slot is
// len(c.procs)) and in the PID file before waiting, so a failed start is
// still stopped, and waits until it is ready.
func (c *Cluster) launch(ctx context.Context, s component, slot int) (*Process, error) {
	start := time.Now()
	p, err := StartProcess(s.name, s.path, s.args, c.layout.log(s.name), c.opts.Detach)
	if err != nil {
		return nil, err
	}
	if slot == len(c.procs) {
		c.procs = append(c.procs, p)
	} else {
		c.procs[slot] = p
	}
	if err := writePids(c.layout, c.procs); err != nil {
		return nil, err
	}
	client, err := httpClient(c.layout, s.leaf)
	if err != nil {
		return nil, err
	}
	check := func(ctx context.Context) error { return probe(ctx, client, s.url, s.want) }
	if err := waitReady(ctx, p, c.opts.ComponentTimeout, check); err != nil {
		return nil, err
	}
	c.progress("%s ready on %s (pid %d, %s)", s.name, s.url, p.pid, since(start))
	return p, nil
}

// Stop stops every component, newest first so nothing logs a storm of connection errors
// about the one below it, and forgets the recorded PIDs. Calling it twice is harmless.
func (c *Cluster) Stop() error {
	var errs []error
	for i := len(c.procs) - 1; i >= 0; i-- {
		p := c.procs[i]
		if err := p.Stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(c.layout.pidsFile()); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// HPAControllerFlags are the HPA controller's settings this cluster runs
// kube-controller-manager with, as the flags of `metrics-gateway explain`.
func (c *Cluster) HPAControllerFlags() []string {
	return []string{
		"--downscale-stabilization=" + c.opts.HPADownscaleStabilization.String(),
		"--initial-readiness-delay=" + c.opts.HPAInitialReadinessDelay.String(),
		"--cpu-initialization-period=" + c.opts.HPACPUInitializationPeriod.String(),
	}
}

// RESTConfig is the admin (system:masters) client configuration.
func (c *Cluster) RESTConfig() (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
}

// Client is a clientset for the admin user.
func (c *Cluster) Client() (kubernetes.Interface, error) {
	cfg, err := c.RESTConfig()
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// CACert returns the cluster CA certificate (PEM) that signed the apiserver's serving cert.
func (c *Cluster) CACert() ([]byte, error) {
	return os.ReadFile(c.layout.pki(caName + ".crt"))
}

func (c *Cluster) progress(format string, args ...any) {
	fmt.Fprintf(c.out, "localcluster: "+format+"\n", args...)
}

func since(t time.Time) string {
	return time.Since(t).Round(100 * time.Millisecond).String()
}
