package env

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
	"github.com/metrics-gateway/metrics-gateway/test/sim"
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
	Gateway  *Gateway
	sim      *Command
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
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	for _, b := range []string{o.GatewayBin, filepath.Join(o.BinDir, "simkubelet"), filepath.Join(o.BinDir, "kubectl")} {
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
	e.Cluster, err = cluster.Start(ctx, cluster.Options{Dir: filepath.Join(o.Dir, "cluster"), BinDir: o.BinDir, Stdout: o.Stdout, Detach: o.Detach})
	if err != nil {
		return nil, err
	}
	if e.Client, err = e.Cluster.Client(); err != nil {
		return nil, err
	}
	if err := e.startSim(ctx); err != nil {
		return nil, err
	}
	if err := e.startGateway(ctx); err != nil {
		return nil, err
	}
	if o.Detach {
		if err := writePIDs(o.Dir, e.sim, e.Gateway.proc); err != nil {
			return nil, err
		}
	}
	return e, nil
}

func (e *Env) startSim(ctx context.Context) error {
	simDir := filepath.Join(e.Dir, "sim")
	if err := os.MkdirAll(simDir, 0o755); err != nil {
		return err
	}
	controlFile := filepath.Join(simDir, "control")
	_ = os.Remove(controlFile)
	ca, err := e.Cluster.CACert()
	if err != nil {
		return err
	}
	auth, err := sim.WriteClientAuth(simDir, ca)
	if err != nil {
		return err
	}
	e.SimToken = auth.Token
	args := []string{
		"--kubeconfig", e.Cluster.Kubeconfig, "--nodes", fmt.Sprint(e.Nodes), "--cert-dir", simDir,
		"--token-file", auth.TokenFile, "--client-ca-file", auth.CAFile, "--control-file", controlFile,
	}
	if e.FirstNodeIP != "" {
		args = append(args, "--first-ip", e.FirstNodeIP)
	}
	if e.PodCIDRBase != "" {
		args = append(args, "--pod-cidr-base", e.PodCIDRBase)
	}
	e.sim = &Command{Name: "simkubelet", Path: filepath.Join(e.BinDir, "simkubelet"), LogPath: filepath.Join(e.Dir, "simkubelet.log"), Detach: e.Detach, Args: args}
	start := time.Now()
	if err := e.sim.Start(); err != nil {
		return err
	}
	if err := poll(ctx, 60*time.Second, "simulated kubelets' control API", func() error {
		if e.sim.Exited() {
			return cluster.StopPoll{Err: fmt.Errorf("simkubelet exited:\n%s", e.sim.Tail(20))}
		}
		b, err := os.ReadFile(controlFile)
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			return fmt.Errorf("no control file yet")
		}
		e.SimControl = strings.TrimSpace(string(b))
		if !strings.HasPrefix(e.SimControl, "http") {
			e.SimControl = "http://" + e.SimControl
		}
		return nil
	}); err != nil {
		return err
	}
	if err := poll(ctx, 60*time.Second, "simulated nodes Ready", func() error { return e.nodesReady(ctx) }); err != nil {
		return err
	}
	e.progress("%d simulated nodes ready (%.1fs), control API %s", e.Nodes, time.Since(start).Seconds(), e.SimControl)
	return nil
}

func (e *Env) nodesReady(ctx context.Context) error {
	nodes, err := e.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	ready := 0
	for _, n := range nodes.Items {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				ready++
			}
		}
		for _, t := range n.Spec.Taints {
			if t.Key == "node.kubernetes.io/not-ready" {
				return fmt.Errorf("node %s still tainted not-ready", n.Name)
			}
		}
	}
	if ready < e.Nodes {
		return fmt.Errorf("%d of %d nodes Ready", ready, e.Nodes)
	}
	return nil
}

// Down stops the gateway, the simulated kubelets and the control plane.
func (e *Env) Down() error {
	var errs []error
	if e.Gateway != nil && e.Gateway.proc != nil {
		errs = append(errs, e.Gateway.proc.Stop())
	}
	if e.sim != nil {
		errs = append(errs, e.sim.Stop())
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
	for _, p := range []*Command{e.sim, e.gatewayProc()} {
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
