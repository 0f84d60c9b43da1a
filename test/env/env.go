package env

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
)

// Options describe the environment.
type Options struct {
	// Dir holds all state: the cluster's, the kubelets' and the gateway's.
	Dir string
	// BinDir holds the control plane and simkubelet (default test/bin).
	BinDir string
	// GatewayBin is the gateway binary (default bin/metrics-gateway of the
	// root module).
	GatewayBin string
	// Nodes is how many simulated nodes to run (default 3).
	Nodes int
	// Resolution is the gateway's --metric-resolution and the scrape
	// interval of annotated pods (default 15s).
	Resolution time.Duration
	// FirstNodeIP and PodCIDRBase place the simulated nodes (first-ip + i)
	// and pods (base + 1 upward) in 127.0.0.0/8; empty keeps simkubelet's
	// defaults. Two environments, or one and a benchmark, can share a
	// machine only with ranges apart: every node's kubelet listens on
	// port 10250 of its own address.
	FirstNodeIP, PodCIDRBase string
	// NodesPerSim splits the nodes over simkubelet processes of this
	// many nodes each, named sim-<process>-<index> (0: one process, with
	// simkubelet's node names); FirstNodeIP must then be set.
	NodesPerSim int
	// SimTimeout bounds each wait for the simulators (default 1 minute;
	// adopting thousands of pods takes several).
	SimTimeout time.Duration
	// Controllers, when set, are the only controllers
	// kube-controller-manager runs.
	Controllers []string
	// BeforeSims runs once the control plane is up and before the
	// simulated kubelets start, which adopt the pods it binds to their
	// nodes (the benchmark creates thousands that way).
	BeforeSims func(ctx context.Context, e *Env) error
	// NoGateway leaves the gateway unstarted: the benchmark starts the
	// servers it compares itself (NewGateway).
	NoGateway bool
	// GatewayCgroup, when set, is the memory cgroup the gateway runs in,
	// as in a pod with limits.memory.
	GatewayCgroup *MemoryCgroup
	// Detach leaves every process running after this one exits (the demo).
	Detach bool
	// Stdout receives progress lines; nil means os.Stdout.
	Stdout io.Writer
}

// Env is a running environment.
type Env struct {
	Options
	Cluster *cluster.Cluster
	Client  kubernetes.Interface
	// SimControl is the simulated kubelets' control API base URL.
	SimControl string
	// SimToken is the bearer token the simulated kubelets accept.
	SimToken string
	// KubeletCA is the bundle of the simulated kubelets' serving CAs.
	KubeletCA string
	Gateway   *Gateway
	sims      []*Command
	// gatewayKubeconfig is the gateway ServiceAccount's, made once
	// (manifests/base applied, a token requested) for every NewGateway.
	gatewayKubeconfig string
	// root is the repository's top directory (manifests/ is read from it).
	root string
}

func (o *Options) complete() error {
	if o.Dir == "" {
		return errors.New("env: Dir is empty")
	}
	root, err := repoRoot()
	if err != nil {
		return err
	}
	if o.BinDir == "" {
		o.BinDir = filepath.Join(root, "test", "bin")
	}
	if o.GatewayBin == "" {
		o.GatewayBin = filepath.Join(root, "bin", "metrics-gateway")
	}
	if o.Nodes <= 0 {
		o.Nodes = 3
	}
	if o.Resolution <= 0 {
		o.Resolution = 15 * time.Second
	}
	if o.SimTimeout <= 0 {
		o.SimTimeout = time.Minute
	}
	if o.NodesPerSim > 0 && o.FirstNodeIP == "" {
		return errors.New("env: NodesPerSim needs FirstNodeIP")
	}
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	bins := []string{filepath.Join(o.BinDir, "simkubelet"), filepath.Join(o.BinDir, "kubectl")}
	if !o.NoGateway {
		bins = append(bins, o.GatewayBin)
	}
	for _, b := range bins {
		if _, err := os.Stat(b); err != nil {
			return fmt.Errorf("env: %s missing (run make e2e-build): %w", b, err)
		}
	}
	return os.MkdirAll(o.Dir, 0o755)
}

// repoRoot finds the root module's directory from the working directory.
func repoRoot() (string, error) {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err == nil {
		return strings.TrimSpace(string(out)), nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; d != "/"; d = filepath.Dir(d) {
		if b, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/metrics-gateway/metrics-gateway\n") {
			return d, nil
		}
	}
	return "", fmt.Errorf("env: no metrics-gateway checkout above %s", wd)
}

func (e *Env) progress(format string, args ...any) {
	fmt.Fprintf(e.Stdout, "env: "+format+"\n", args...)
}

// Up starts the control plane, the simulated kubelets and the gateway, and
// waits until every APIService the gateway serves (GatewayAPIs) is Available.
func Up(ctx context.Context, o Options) (_ *Env, err error) {
	if err := o.complete(); err != nil {
		return nil, err
	}
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	e := &Env{Options: o, root: root}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w\n%s", err, e.LogTails(30))
			_ = e.Down()
		}
	}()
	e.Cluster, err = cluster.Start(ctx, cluster.Options{Dir: filepath.Join(o.Dir, "cluster"), BinDir: o.BinDir, Stdout: o.Stdout, Detach: o.Detach, Controllers: o.Controllers})
	if err != nil {
		return nil, err
	}
	if e.Client, err = e.Cluster.Client(); err != nil {
		return nil, err
	}
	if o.BeforeSims != nil {
		if err := o.BeforeSims(ctx, e); err != nil {
			return nil, err
		}
	}
	if err := e.startSims(ctx); err != nil {
		return nil, err
	}
	if !o.NoGateway {
		if err := e.startGateway(ctx); err != nil {
			return nil, err
		}
	}
	if o.Detach {
		if err := writePIDs(o.Dir, slices.Concat(e.sims, []*Command{e.gatewayProc()})...); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Down stops the gateway, the simulated kubelets and the control plane.
func (e *Env) Down() error {
	var errs []error
	if e.Gateway != nil && e.Gateway.proc != nil {
		errs = append(errs, e.Gateway.proc.Stop())
	}
	for _, c := range e.sims {
		errs = append(errs, c.Stop())
	}
	if e.Cluster != nil {
		errs = append(errs, e.Cluster.Stop())
	}
	return errors.Join(errs...)
}

// DownDir stops a detached environment found in dir (the demo's).
func DownDir(dir string) error {
	var errs []error
	errs = append(errs, killPIDs(dir))
	if c, err := cluster.Attach(filepath.Join(dir, "cluster")); err == nil {
		errs = append(errs, c.Stop())
	} else if !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// LogTails returns the last n lines of every component's log.
func (e *Env) LogTails(n int) string {
	var b strings.Builder
	if e.Cluster != nil {
		b.WriteString(e.Cluster.LogTails(n))
	}
	for _, p := range slices.Concat(e.sims, []*Command{e.gatewayProc()}) {
		if p != nil {
			fmt.Fprintf(&b, "\n===== %s (%s) =====\n%s\n", p.Name, p.LogPath, p.Tail(n))
		}
	}
	return b.String()
}

func (e *Env) gatewayProc() *Command {
	if e.Gateway == nil {
		return nil
	}
	return e.Gateway.proc
}

// Kubectl runs kubectl with the admin kubeconfig and returns its output.
func (e *Env) Kubectl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.BinDir, "kubectl"), append([]string{"--kubeconfig", e.Cluster.Kubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// poll runs f every 250ms until it succeeds, returns a
// cluster.StopPoll, or timeout (cluster.Poll).
func poll(ctx context.Context, timeout time.Duration, what string, f func() error) error {
	return cluster.Poll(ctx, 250*time.Millisecond, timeout, what, f)
}

// Root is the repository's top directory.
func (e *Env) Root() string { return e.root }
