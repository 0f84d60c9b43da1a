package sim

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"
)

// NodeConfig names one simulated node and the loopback address its kubelet uses.
type NodeConfig struct {
	Name string
	IP   netip.Addr
}

// Config is everything the data side needs; no API server is involved.
type Config struct {
	Nodes       []NodeConfig
	PodCIDRBase netip.Addr // pods get base+1 upward
	Clock       clock.PassiveClock
}

// Sim holds the simulated nodes and their running pods. Goroutine-safe.
type Sim struct {
	clock clock.PassiveClock
	nodes map[string]*Node
	order []string
	pool  *ipPool
	pods  podSet
	// lifecycle serialises starting and stopping pods so a key is never half
	// started while another call stops it.
	lifecycle sync.Mutex
	// done is closed by Close; hanging handlers wait on it so shutdown never
	// waits for a scraper's timeout.
	done      chan struct{}
	closeOnce sync.Once
	// webhook, when set, authorizes bearer tokens through the API server.
	webhook  *WebhookAuth
	kubelets []*kubeletServer
}

// New validates cfg and creates the nodes; it starts no servers.
func New(cfg Config) (*Sim, error) {
	var errs []error
	if len(cfg.Nodes) == 0 {
		errs = append(errs, errors.New("no nodes"))
	}
	if cfg.Clock == nil {
		errs = append(errs, errors.New("no clock"))
	}
	pool, err := newIPPool(cfg.PodCIDRBase)
	if err != nil {
		errs = append(errs, err)
	}
	s := &Sim{clock: cfg.Clock, nodes: map[string]*Node{}, pool: pool, pods: podSet{pods: map[string]*Pod{}}, done: make(chan struct{})}
	seen := map[string]bool{}
	for _, n := range cfg.Nodes {
		switch {
		case n.Name == "":
			errs = append(errs, errors.New("node with no name"))
		case seen[n.Name]:
			errs = append(errs, fmt.Errorf("node %s listed twice", n.Name))
			continue
		case !n.IP.Is4() || !loopback.Contains(n.IP):
			errs = append(errs, fmt.Errorf("node %s: IP %s is not in %s", n.Name, n.IP, loopback))
		case pool != nil && pool.contains(n.IP):
			errs = append(errs, fmt.Errorf("node %s: IP %s is inside the pod range (from %s)", n.Name, n.IP, pool.first))
		}
		seen[n.Name] = true
		s.order = append(s.order, n.Name)
		if cfg.Clock != nil {
			s.nodes[n.Name] = NewNode(n.Name, n.IP, cfg.Clock.Now())
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Clock is the clock every reading is taken with.
func (s *Sim) Clock() clock.PassiveClock { return s.clock }

// Nodes returns the nodes in configuration order.
func (s *Sim) Nodes() []*Node {
	out := make([]*Node, 0, len(s.order))
	for _, n := range s.order {
		out = append(out, s.nodes[n])
	}
	return out
}

// Node returns the named node, or nil.
func (s *Sim) Node(name string) *Node { return s.nodes[name] }

// Pod returns the running pod under namespace/name, or nil.
func (s *Sim) Pod(key string) *Pod { return s.pods.get(key) }

// StartPod allocates an IP, opens the pod's ports and adds it to its node's
// usage. Starting a pod that already runs with the same UID returns it unchanged;
// a different UID under the same key is an error (stop the old one first).
func (s *Sim) StartPod(spec PodSpec) (*Pod, error) {
	s.lifecycle.Lock()
	defer s.lifecycle.Unlock()
	node := s.nodes[spec.Node]
	if node == nil {
		return nil, fmt.Errorf("pod %s: node %q is not simulated here", spec.Key(), spec.Node)
	}
	if old := s.pods.get(spec.Key()); old != nil {
		if old.UID == spec.UID {
			return old, nil
		}
		return nil, fmt.Errorf("pod %s: still running with UID %s", spec.Key(), old.UID)
	}
	if len(spec.Containers) == 0 {
		return nil, fmt.Errorf("pod %s: no containers", spec.Key())
	}
	params, perrs := ParamsFromAnnotations(spec.Annotations)
	expo, xerrs := ExpositionFromAnnotations(spec.Annotations)
	for _, err := range append(perrs, xerrs...) {
		klog.ErrorS(err, "Ignoring annotation", "pod", klog.KRef(spec.Namespace, spec.Name))
	}
	p := &Pod{Namespace: spec.Namespace, Name: spec.Name, UID: spec.UID, Node: spec.Node, HostIP: node.IP, Ports: uniquePorts(spec.Ports),
		cgroups: newPodCgroups(spec)}
	if err := s.assignIP(p, spec, node); err != nil {
		return nil, err
	}
	p.Model = NewPodModel(spec.Containers, params, s.clock.Now())
	h, err := podHandler(p.Model, expo, s.clock)
	if err == nil {
		err = p.serve(h)
	}
	if err != nil {
		if p.pooled {
			s.pool.release(p.IP)
		}
		return nil, fmt.Errorf("pod %s: %w", spec.Key(), err)
	}
	s.pods.mu.Lock()
	s.pods.pods[p.Key()] = p
	s.pods.mu.Unlock()
	node.addPod(p)
	klog.InfoS("Started pod", "pod", klog.KRef(p.Namespace, p.Name), "node", p.Node, "podIP", p.IP, "ports", p.Ports)
	return p, nil
}

func (s *Sim) assignIP(p *Pod, spec PodSpec, node *Node) error {
	switch {
	case spec.HostNetwork:
		p.IP = node.IP
	case spec.PreviousIP.IsValid() && s.pool.reserve(spec.PreviousIP):
		p.IP, p.pooled = spec.PreviousIP, true
	default:
		ip, err := s.pool.allocate()
		if err != nil {
			return fmt.Errorf("pod %s: %w", spec.Key(), err)
		}
		p.IP, p.pooled = ip, true
	}
	return nil
}

// StopPod closes the pod's servers, folds its CPU into the node's counter and
// frees its IP. Stopping a pod that does not run is not an error. A non-empty uid
// stops the pod only if it is that incarnation.
func (s *Sim) StopPod(key, uid string) error {
	s.lifecycle.Lock()
	p := s.pods.get(key)
	if p == nil || (uid != "" && p.UID != uid) {
		s.lifecycle.Unlock()
		return nil
	}
	p.stopping.Store(true)
	s.pods.mu.Lock()
	delete(s.pods.pods, key)
	s.pods.mu.Unlock()
	s.lifecycle.Unlock()

	// Servers stop before the pod leaves the node so no request lands uncounted.
	err := p.stop()
	s.nodes[p.Node].removePod(p, s.clock.Now())
	if p.pooled {
		s.pool.release(p.IP)
	}
	klog.InfoS("Stopped pod", "pod", klog.KRef(p.Namespace, p.Name), "node", p.Node, "podIP", p.IP)
	if err != nil {
		return fmt.Errorf("stop pod %s: %w", key, err)
	}
	return nil
}

// Close stops every pod and kubelet server. Hanging scrapes return at once.
func (s *Sim) Close() error {
	s.closeOnce.Do(func() { close(s.done) })
	var errs []error
	for _, k := range s.kubelets {
		errs = append(errs, k.close())
	}
	pods := s.pods.all()
	slices.SortFunc(pods, func(a, b *Pod) int { return strings.Compare(a.Key(), b.Key()) })
	for _, p := range pods {
		errs = append(errs, s.StopPod(p.Key(), p.UID))
	}
	return errors.Join(errs...)
}
