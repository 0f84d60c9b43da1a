package kubeagent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

// Heartbeat periods, a kubelet's defaults: the lease every 10 s, the node status
// every 10 s jittered up to 20 s (nodeStatusUpdateFrequency with the jitter the
// kubelet applies when leases carry the heartbeat).
const (
	DefaultLeaseInterval  = 10 * time.Second
	DefaultStatusInterval = 10 * time.Second
	leaseDurationSeconds  = 40
)

// Config wires an Agent.
type Config struct {
	Client kubernetes.Interface
	Sim    *sim.Sim
	// KubeletPort goes into status.daemonEndpoints, where --kubelet-use-node-status-port
	// reads it.
	KubeletPort int
	// KubeletVersion is reported in status.nodeInfo.
	KubeletVersion string
	LeaseInterval  time.Duration // zero means DefaultLeaseInterval
	StatusInterval time.Duration // zero means DefaultStatusInterval
	Workers        int           // pod sync workers; zero means 4
}

// Agent keeps the simulated nodes and their pods in step with the API server.
type Agent struct {
	cfg   Config
	nodes map[string]*sim.Node
	mu    sync.Mutex
	uids  map[string]types.UID // Node object UIDs, for lease owner references
	wg    sync.WaitGroup
	pods  *podController
}

// New checks cfg and fills in defaults.
func New(cfg Config) (*Agent, error) {
	var errs []error
	if cfg.Client == nil {
		errs = append(errs, errors.New("no API client"))
	}
	if cfg.Sim == nil {
		errs = append(errs, errors.New("no simulation"))
	}
	if cfg.KubeletPort <= 0 || cfg.KubeletPort > 65535 {
		errs = append(errs, fmt.Errorf("kubelet port %d out of range", cfg.KubeletPort))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if cfg.LeaseInterval <= 0 {
		cfg.LeaseInterval = DefaultLeaseInterval
	}
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = DefaultStatusInterval
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	a := &Agent{cfg: cfg, nodes: map[string]*sim.Node{}, uids: map[string]types.UID{}}
	for _, n := range cfg.Sim.Nodes() {
		a.nodes[n.Name] = n
	}
	return a, nil
}

// Start registers every node, then starts the heartbeats and the pod watch, and
// returns once the pod cache has synced and the pods already bound to the nodes
// run again: from then on a pod bound to one of them is acted on. The work runs
// until ctx ends; Wait waits for it.
func (a *Agent) Start(ctx context.Context) error {
	for _, n := range a.cfg.Sim.Nodes() {
		if err := a.registerWithRetry(ctx, n); err != nil {
			return err
		}
	}
	a.goUntil(ctx, a.renewLeases, a.cfg.LeaseInterval, 0)
	a.goUntil(ctx, a.updateStatuses, a.cfg.StatusInterval, 1.0)
	a.pods = newPodController(a.cfg.Client, a.cfg.Sim, a.cfg.Workers)
	return a.pods.start(ctx, &a.wg)
}

// registerWithRetry gives a freshly started API server (RBAC still bootstrapping,
// kube-node-lease not yet created) a minute before start-up fails.
func (a *Agent) registerWithRetry(ctx context.Context, n *sim.Node) error {
	var last error
	err := wait.PollUntilContextTimeout(ctx, time.Second, time.Minute, true, func(ctx context.Context) (bool, error) {
		if last = a.registerNode(ctx, n); last != nil {
			klog.ErrorS(last, "Registering node, will retry", "node", n.Name)
			return false, nil
		}
		return true, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

// goUntil runs f every period (stretched by up to jitter×period) until ctx ends;
// the first run waits one period, registration having just done the same work.
func (a *Agent) goUntil(ctx context.Context, f func(context.Context), period time.Duration, jitter float64) {
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
		wait.JitterUntilWithContext(ctx, f, period, jitter, true)
	}()
}

// Wait blocks until everything Start began has returned after ctx ended.
func (a *Agent) Wait() { a.wg.Wait() }

// DeleteNodes removes the Node objects and their Leases, for --delete-nodes-on-exit.
// Pods bound to them are left to whatever garbage collection the cluster runs.
func (a *Agent) DeleteNodes(ctx context.Context) error {
	var errs []error
	for _, n := range a.cfg.Sim.Nodes() {
		err := a.cfg.Client.CoreV1().Nodes().Delete(ctx, n.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete node %s: %w", n.Name, err))
		}
		err = a.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease).Delete(ctx, n.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("delete lease %s: %w", n.Name, err))
		}
		if len(errs) == 0 {
			klog.InfoS("Deleted node", "node", n.Name)
		}
	}
	return errors.Join(errs...)
}
