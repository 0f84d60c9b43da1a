package kubeagent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listersv1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

// podController runs the pods bound to simulated nodes: one informer over every
// scheduled pod, filtered to ours, feeding a rate-limited queue of namespace/name
// keys, so a key is never synced by two workers at once and failures back off.
type podController struct {
	client  kubernetes.Interface
	sim     *sim.Sim
	workers int
	lister  listersv1.PodLister
	queue   workqueue.TypedRateLimitingInterface[string]
}

func newPodController(c kubernetes.Interface, s *sim.Sim, workers int) *podController {
	// Backoff tops out at 30 s, not the default 1000 s: a test waits for a pod, and
	// the usual failure (the API server restarting) heals in seconds.
	rl := workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second)
	return &podController{client: c, sim: s, workers: workers, queue: workqueue.NewTypedRateLimitingQueue(rl)}
}

func (c *podController) ours(obj any) bool {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	p, ok := obj.(*corev1.Pod)
	return ok && c.sim.Node(p.Spec.NodeName) != nil
}

func (c *podController) enqueue(obj any) {
	if !c.ours(obj) {
		return
	}
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	c.queue.Add(key)
}

// start begins the watch, waits for its first list and starts the workers. The
// field selector keeps unscheduled pods out of the cache; ours() keeps other
// nodes' pods out of the queue.
func (c *podController) start(ctx context.Context, wg *sync.WaitGroup) error {
	factory := informers.NewSharedInformerFactoryWithOptions(c.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermNotEqualSelector("spec.nodeName", "").String()
		}))
	inf := factory.Core().V1().Pods()
	c.lister = inf.Lister()
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	}); err != nil {
		return fmt.Errorf("pod informer: %w", err)
	}
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return errors.New("pod informer did not sync")
	}
	c.syncExisting(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		c.queue.ShutDown()
		factory.Shutdown()
	}()
	for range c.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c.next(ctx) {
			}
		}()
	}
	return nil
}

// syncExisting runs the pods already bound to our nodes (a simulator restart)
// before start returns, so "ready" means they serve again. A failure is left to
// the queue's retries.
func (c *podController) syncExisting(ctx context.Context) {
	pods, err := c.lister.List(labels.Everything())
	if err != nil {
		utilruntime.HandleError(err)
		return
	}
	for _, p := range pods {
		if !c.ours(p) {
			continue
		}
		key := cache.MetaObjectToName(p).String()
		if err := c.sync(ctx, key); err != nil {
			klog.ErrorS(err, "Syncing pod, will retry", "pod", key)
			c.queue.AddRateLimited(key)
		}
	}
}

func (c *podController) next(ctx context.Context) bool {
	key, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(key)
	if err := c.sync(ctx, key); err != nil {
		if ctx.Err() == nil {
			klog.ErrorS(err, "Syncing pod, will retry", "pod", key, "retries", c.queue.NumRequeues(key))
		}
		c.queue.AddRateLimited(key)
		return true
	}
	c.queue.Forget(key)
	return true
}

// sync brings one key's servers and status in line with the API object.
func (c *podController) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	pod, err := c.lister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return c.sim.StopPod(key, "")
	}
	if err != nil {
		return err
	}
	running := c.sim.Pod(key)
	if running != nil && running.UID != string(pod.UID) {
		// Same name, new pod (a StatefulSet replica): the old one is gone.
		if err := c.sim.StopPod(key, running.UID); err != nil {
			return err
		}
		running = nil
	}
	switch {
	case pod.DeletionTimestamp != nil:
		if err := c.sim.StopPod(key, string(pod.UID)); err != nil {
			return err
		}
		return c.finishDeletion(ctx, pod)
	case pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed:
		return c.sim.StopPod(key, string(pod.UID))
	}
	if running == nil {
		if running, err = c.sim.StartPod(specFor(pod)); err != nil {
			return err
		}
	}
	if statusCurrent(pod, running) {
		return nil
	}
	return c.reportRunning(ctx, pod, running)
}

// finishDeletion removes the object once its containers are gone, as the kubelet's
// status manager does; the UID precondition spares a successor with the same name.
func (c *podController) finishDeletion(ctx context.Context, pod *corev1.Pod) error {
	err := c.client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64(0)),
		Preconditions:      &metav1.Preconditions{UID: &pod.UID},
	})
	switch {
	case err == nil:
		klog.InfoS("Deleted pod", "pod", klog.KObj(pod), "node", pod.Spec.NodeName)
		return nil
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return nil // already gone, or replaced by a pod this sync must not touch
	}
	return fmt.Errorf("delete pod %s: %w", klog.KObj(pod), err)
}

// specFor takes from the API object what the simulation needs. Restartable init
// containers (sidecars) run beside the main containers, so they get usage and
// ports too; other init containers have finished before the pod runs.
func specFor(pod *corev1.Pod) sim.PodSpec {
	s := sim.PodSpec{
		Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), Node: pod.Spec.NodeName,
		Annotations: pod.Annotations, HostNetwork: pod.Spec.HostNetwork, QOSClass: string(pod.Status.QOSClass),
	}
	add := func(c corev1.Container) {
		s.Containers = append(s.Containers, c.Name)
		s.Images = append(s.Images, c.Image)
		s.Limits = append(s.Limits, sim.ContainerLimits{
			CPUCores:    c.Resources.Limits.Cpu().AsApproximateFloat64(),
			MemoryBytes: c.Resources.Limits.Memory().AsApproximateFloat64(),
		})
		for _, p := range c.Ports {
			if p.Protocol == "" || p.Protocol == corev1.ProtocolTCP {
				s.Ports = append(s.Ports, int(p.ContainerPort))
			}
		}
	}
	for _, c := range pod.Spec.InitContainers {
		if isSidecar(c) {
			add(c)
		}
	}
	for _, c := range pod.Spec.Containers {
		add(c)
	}
	if ip, err := netip.ParseAddr(pod.Status.PodIP); err == nil {
		s.PreviousIP = ip
	}
	return s
}

func isSidecar(c corev1.Container) bool {
	return c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways
}

// reportRunning patches the status subresource. A JSON merge patch without a
// resourceVersion cannot conflict, and replaces the lists (conditions, container
// statuses) wholesale, which is what a full status report means.
func (c *podController) reportRunning(ctx context.Context, pod *corev1.Pod, p *sim.Pod) error {
	patch, err := runningStatusPatch(pod, p)
	if err != nil {
		return err
	}
	err = wait.ExponentialBackoffWithContext(ctx, wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 4},
		func(ctx context.Context) (bool, error) {
			_, err := c.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}, "status")
			switch {
			case err == nil:
				return true, nil
			case apierrors.IsNotFound(err):
				return false, err
			case apierrors.IsConflict(err), apierrors.IsServerTimeout(err), apierrors.IsTooManyRequests(err), apierrors.IsServiceUnavailable(err):
				return false, nil
			}
			return false, err
		})
	if err != nil {
		return fmt.Errorf("report pod %s running: %w", klog.KObj(pod), err)
	}
	klog.V(2).InfoS("Reported pod running", "pod", klog.KObj(pod), "podIP", p.IP)
	return nil
}
