package bench

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
	"github.com/metrics-gateway/metrics-gateway/test/env"
)

// Scale is a simulated cluster size.
type Scale struct{ Nodes, PodsPerNode int }

func (s Scale) String() string { return fmt.Sprintf("%d×%d", s.Nodes, s.PodsPerNode) }

// Pods is the number of pods at this scale.
func (s Scale) Pods() int { return s.Nodes * s.PodsPerNode }

// ParseScale reads "NODESxPODS".
func ParseScale(v string) (Scale, error) {
	var s Scale
	if _, err := fmt.Sscanf(strings.ReplaceAll(v, "×", "x"), "%dx%d", &s.Nodes, &s.PodsPerNode); err != nil || s.Nodes < 1 || s.PodsPerNode < 1 {
		return s, fmt.Errorf("scale %q: want NODESxPODS, e.g. 100x70", v)
	}
	return s, nil
}

// Workload shape: pods are spread over namespaces of podsPerNamespace, labelled
// app=app-<k> in groups of GroupSize, the size of one HPA's target. Group app-0
// of namespace bench-0 is what the selector queries ask for.
const (
	podsPerNamespace = 1000
	GroupSize        = 100
	// SelectorNamespace and SelectorApp name the group the HPA-like queries select.
	SelectorNamespace = "bench-0"
	SelectorApp       = "app-0"
	// nodesPerSim bounds the nodes (and so pod listeners) of one simkubelet
	// process: each pod holds a listening socket and the hard file limit here is
	// 20,000.
	nodesPerSim = 250
	firstNodeIP = "127.0.0.10"
	firstPodIP  = "127.1.0.1"
	podCIDRBase = "127.1.0.0"
	podPort     = 8080
)

// World is a control plane with simulated nodes and pods: an env.Env
// without its gateway, whose pods the benchmark creates before the
// simulators start.
type World struct {
	Scale Scale
	Dir   string
	Env   *env.Env
	// Cluster is Env's, and Client an admin client allowed the rates that
	// creating thousands of pods needs.
	Cluster *cluster.Cluster
	Client  kubernetes.Interface
	// KubeletCA is a bundle of every simulator's kubelet CA.
	KubeletCA string
	// Token is what the simulated kubelets accept besides cluster-CA client certs.
	Token string
	Nodes []SimNode
	out   io.Writer
}

// SimNode is one simulated node.
type SimNode struct {
	Name string
	IP   netip.Addr
}

func (w *World) progress(format string, args ...any) {
	fmt.Fprintf(w.out, "%s  [%s] "+format+"\n", append([]any{time.Now().Format("15:04:05"), w.Scale}, args...)...)
}

// Up starts the control plane, creates the pods (Running, with their IPs) and then
// the simulators, which adopt them. No pod is a scrape target yet
// (AnnotateAll, AnnotateGroup).
func Up(ctx context.Context, dir, binDir string, scale Scale, out io.Writer) (w *World, err error) {
	w = &World{Scale: scale, Dir: dir, out: out}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	ip := netip.MustParseAddr(firstNodeIP)
	for i := range scale.Nodes {
		w.Nodes = append(w.Nodes, SimNode{Name: simNodeName(i), IP: ip})
		ip = ip.Next()
	}
	start := time.Now()
	e, err := env.Up(ctx, env.Options{
		Dir: dir, BinDir: binDir, Nodes: scale.Nodes, NodesPerSim: nodesPerSim,
		FirstNodeIP: firstNodeIP, PodCIDRBase: podCIDRBase, SimTimeout: 10 * time.Minute,
		// No node lifecycle or pod GC: pods are bound to nodes before the
		// simulators register them, and no controller should touch them.
		Controllers: []string{"serviceaccount-controller", "namespace-controller"},
		NoGateway:   true, Stdout: io.Discard,
		BeforeSims: func(ctx context.Context, e *env.Env) error {
			w.progress("control plane up in %s", time.Since(start).Round(time.Second))
			start = time.Now()
			if err := w.connect(e.Cluster); err != nil {
				return err
			}
			if err := w.createPods(ctx); err != nil {
				return err
			}
			w.progress("%d pods created and Running in %s", scale.Pods(), time.Since(start).Round(time.Second))
			start = time.Now()
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	w.Env, w.KubeletCA, w.Token = e, e.KubeletCA, e.SimToken
	w.progress("%d simulated nodes Ready in %s", scale.Nodes, time.Since(start).Round(time.Second))
	return w, nil
}

// connect makes Client, with rates for creating thousands of pods.
func (w *World) connect(c *cluster.Cluster) error {
	w.Cluster = c
	cfg, err := c.RESTConfig()
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = 2000, 4000
	w.Client, err = kubernetes.NewForConfig(cfg)
	return err
}

// simNodeName is node i's name: simkubelet process i/nodesPerSim names its
// nodes prefix+index from 0.
func simNodeName(i int) string { return fmt.Sprintf("sim-%d-%d", i/nodesPerSim, i%nodesPerSim) }

// podAt says where pod i lives and what it is called.
func (w *World) podAt(i int) (ns, name, app string, node SimNode, ip netip.Addr) {
	ns = fmt.Sprintf("bench-%d", i/podsPerNamespace)
	j := i % podsPerNamespace
	app = fmt.Sprintf("app-%d", j/GroupSize)
	name = fmt.Sprintf("%s-%d", app, j%GroupSize)
	node = w.Nodes[i%w.Scale.Nodes]
	ip = netip.MustParseAddr(firstPodIP)
	b := ip.As4()
	n := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	n += uint32(i)
	ip = netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
	return
}

func (w *World) namespaces() int { return (w.Scale.Pods() + podsPerNamespace - 1) / podsPerNamespace }

func (w *World) createPods(ctx context.Context) error {
	for k := range w.namespaces() {
		ns := fmt.Sprintf("bench-%d", k)
		_, err := w.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
		if err := cluster.Poll(ctx, 200*time.Millisecond, time.Minute, "namespace "+ns+"'s default ServiceAccount", func() error {
			_, err := w.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err
		}); err != nil {
			return err
		}
	}
	return parallel(ctx, w.Scale.Pods(), 16, func(ctx context.Context, i int) error {
		return w.createPod(ctx, i)
	})
}

func (w *World) createPod(ctx context.Context, i int) error {
	ns, name, app, node, ip := w.podAt(i)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": app}},
		Spec: corev1.PodSpec{
			NodeName:                     node.Name,
			AutomountServiceAccountToken: new(false),
			Containers: []corev1.Container{{Name: "app", Image: "ghcr.io/stefanprodan/podinfo:6.7.1",
				Ports: []corev1.ContainerPort{{ContainerPort: podPort, Protocol: corev1.ProtocolTCP}}}},
		},
	}
	created, err := w.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = w.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	}
	if err != nil {
		return fmt.Errorf("create pod %s/%s: %w", ns, name, err)
	}
	_, err = w.Client.CoreV1().Pods(ns).UpdateStatus(ctx, runningStatus(created, node.IP, ip), metav1.UpdateOptions{})
	if err != nil {
		return fmt.Errorf("pod %s/%s status: %w", ns, name, err)
	}
	return nil
}

// runningStatus is what the simulator's kubelet agent would report, so that it
// adopts the pod at this IP without writing a status of its own.
func runningStatus(p *corev1.Pod, hostIP, podIP netip.Addr) *corev1.Pod {
	p = p.DeepCopy()
	now := metav1.Now()
	st := &p.Status
	st.Phase = corev1.PodRunning
	st.HostIP, st.HostIPs = hostIP.String(), []corev1.HostIP{{IP: hostIP.String()}}
	st.PodIP, st.PodIPs = podIP.String(), []corev1.PodIP{{IP: podIP.String()}}
	st.StartTime = &now
	st.Conditions = nil
	for _, t := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.PodReady, corev1.ContainersReady, corev1.PodScheduled} {
		st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now})
	}
	st.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: c.Image, ContainerID: "containerd://" + string(p.UID) + "-" + c.Name,
			Ready: true, Started: new(true), State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	return p
}

// AnnotateAll makes every pod a scrape target of the annotated-pods jobs.
func (w *World) AnnotateAll(ctx context.Context) error {
	return w.annotate(ctx, func(string, string) bool { return true })
}

// AnnotateGroup makes the selector group's pods (namespace
// SelectorNamespace, app SelectorApp) scrape targets, for the custom metric.
func (w *World) AnnotateGroup(ctx context.Context) error {
	return w.annotate(ctx, func(ns, app string) bool { return ns == SelectorNamespace && app == SelectorApp })
}

func (w *World) annotate(ctx context.Context, which func(ns, app string) bool) error {
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{"prometheus.io/scrape":"true","prometheus.io/port":"%d"}}}`, podPort))
	return parallel(ctx, w.Scale.Pods(), 16, func(ctx context.Context, i int) error {
		ns, name, app, _, _ := w.podAt(i)
		if !which(ns, app) {
			return nil
		}
		_, err := w.Client.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{})
		return err
	})
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, n, workers int, f func(context.Context, int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var once sync.Once
	var first error
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// Down stops the simulators and the control plane.
func (w *World) Down() error {
	if w.Env == nil {
		return nil
	}
	return w.Env.Down()
}
