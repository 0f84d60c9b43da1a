package env

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

// startSims runs the simulated kubelets: one simkubelet process, or one
// per NodesPerSim nodes, each in Dir/sim/<k> with its control file, kubelet
// CA and log. It waits for every control API and for every node to be Ready
// without the not-ready taint, and writes the kubelet CA bundle the servers
// verify kubelets against.
func (e *Env) startSims(ctx context.Context) error {
	simDir := filepath.Join(e.Dir, "sim")
	if err := os.MkdirAll(simDir, 0o755); err != nil {
		return err
	}
	ca, err := e.Cluster.CACert()
	if err != nil {
		return err
	}
	auth, err := sim.WriteClientAuth(simDir, ca)
	if err != nil {
		return err
	}
	e.SimToken = auth.Token
	start := time.Now()
	var controls []string
	for k, n := range e.simSplit() {
		dir := filepath.Join(simDir, fmt.Sprint(k))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		control := filepath.Join(dir, "control")
		_ = os.Remove(control)
		controls = append(controls, control)
		args := []string{
			"--kubeconfig", e.Cluster.Kubeconfig, "--nodes", fmt.Sprint(n), "--cert-dir", dir,
			"--token-file", auth.TokenFile, "--client-ca-file", auth.CAFile, "--control-file", control,
		}
		if e.NodesPerSim > 0 {
			args = append(args, "--node-prefix", fmt.Sprintf("sim-%d-", k), "--v", "0")
		}
		if ip := e.firstIP(k); ip != "" {
			args = append(args, "--first-ip", ip)
		}
		if e.PodCIDRBase != "" {
			args = append(args, "--pod-cidr-base", e.PodCIDRBase)
		}
		c := &Command{Name: fmt.Sprintf("simkubelet-%d", k), Path: filepath.Join(e.BinDir, "simkubelet"), Args: args,
			LogPath: filepath.Join(dir, "simkubelet.log"), Detach: e.Detach}
		if err := c.Start(); err != nil {
			return err
		}
		e.sims = append(e.sims, c)
	}
	if err := e.waitSimControls(ctx, controls); err != nil {
		return err
	}
	if err := e.writeKubeletCA(simDir); err != nil {
		return err
	}
	if err := poll(ctx, e.SimTimeout, "simulated nodes Ready", func() error { return e.nodesReady(ctx) }); err != nil {
		return err
	}
	e.progress("%d simulated nodes ready in %d process(es) (%.1fs), control API %s", e.Nodes, len(e.sims), time.Since(start).Seconds(), e.SimControl)
	return nil
}

// simSplit is how many nodes each simkubelet process runs.
func (e *Env) simSplit() []int {
	per := e.NodesPerSim
	if per <= 0 {
		per = e.Nodes
	}
	var out []int
	for left := e.Nodes; left > 0; left -= per {
		out = append(out, min(per, left))
	}
	return out
}

// firstIP is the address of process k's first node: FirstNodeIP moved on
// by the nodes of the processes before it ("" keeps simkubelet's default).
func (e *Env) firstIP(k int) string {
	if e.FirstNodeIP == "" {
		return ""
	}
	ip := netip.MustParseAddr(e.FirstNodeIP)
	for range k * e.NodesPerSim {
		ip = ip.Next()
	}
	return ip.String()
}

// waitSimControls waits until every simulator wrote its control file
// (after adopting the pods bound to its nodes) and keeps the first one's
// address as SimControl.
func (e *Env) waitSimControls(ctx context.Context, files []string) error {
	return poll(ctx, e.SimTimeout, "simulated kubelets' control API", func() error {
		for _, c := range e.sims {
			if c.Exited() {
				return cluster.StopPoll{Err: fmt.Errorf("%s exited:\n%s", c.Name, c.Tail(20))}
			}
		}
		for i, f := range files {
			b, err := os.ReadFile(f)
			if err != nil || len(strings.TrimSpace(string(b))) == 0 {
				return fmt.Errorf("no control file %s yet", f)
			}
			if i == 0 {
				e.SimControl = strings.TrimSpace(string(b))
				if !strings.HasPrefix(e.SimControl, "http") {
					e.SimControl = "http://" + e.SimControl
				}
			}
		}
		return nil
	})
}

// writeKubeletCA bundles every simulator's kubelet serving CA into
// KubeletCA, which the servers get as --kubelet-certificate-authority.
func (e *Env) writeKubeletCA(simDir string) error {
	var bundle []byte
	for k := range e.sims {
		b, err := os.ReadFile(filepath.Join(simDir, fmt.Sprint(k), "ca.crt"))
		if err != nil {
			return err
		}
		bundle = append(bundle, b...)
	}
	e.KubeletCA = filepath.Join(simDir, "kubelet-ca.crt")
	return os.WriteFile(e.KubeletCA, bundle, 0o644)
}

// nodesReady says why the simulated nodes are not all Ready and untainted
// yet, nil once they are. It lists from the watch cache: thousands of nodes.
func (e *Env) nodesReady(ctx context.Context) error {
	nodes, err := e.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
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

// SimPIDs are the simulators' process ids.
func (e *Env) SimPIDs() []int {
	var out []int
	for _, c := range e.sims {
		out = append(out, c.PID())
	}
	return out
}
