package scrape

import (
	"context"
	"hash/fnv"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/discovery/targetgroup"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// informerDiscoverer turns the objects of one of the gateway's shared
// informers into target groups, one per object, as Prometheus' Kubernetes
// discovery does from its own informers, with one difference: a group
// identical to the one last sent for its object is not sent again. Every
// update of a Node (its status heartbeat) or Pod made Prometheus' discovery
// send the object's group, and every group sent makes the scrape manager
// re-sync the job's targets; labels rarely change when objects do.
type informerDiscoverer struct {
	informer cache.SharedIndexInformer
	// source is the group source of the object with key, for the empty
	// group that says it is gone.
	source func(key string) string
	// build returns the object's group. discovered false means the object
	// has no targets (an empty group is sent if it had some); a nil group
	// with discovered true means nothing is to be said now (Prometheus'
	// node discovery keeps a node's targets when it has no address).
	build func(obj any) (tg *targetgroup.Group, discovered bool)
	// unchanged, when set, reports that an update left every field build
	// reads as it was, so the object's group need not be built again.
	unchanged func(old, cur any) bool
}

var _ discovery.Discoverer = (*informerDiscoverer)(nil)

type noMetrics struct{}

func (noMetrics) Register() error { return nil }
func (noMetrics) Unregister()     {}

// Run implements discovery.Discoverer.
func (d *informerDiscoverer) Run(ctx context.Context, ch chan<- []*targetgroup.Group) {
	queue := workqueue.NewTyped[string]()
	defer queue.ShutDown()
	enqueue := func(o any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(o); err == nil {
			queue.Add(key)
		}
	}
	reg, err := d.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: enqueue,
		UpdateFunc: func(old, cur any) {
			if d.unchanged == nil || !d.unchanged(old, cur) {
				enqueue(cur)
			}
		},
		DeleteFunc: enqueue,
	})
	if err != nil {
		return
	}
	defer func() { _ = d.informer.RemoveEventHandler(reg) }()
	if !cache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return
	}
	go func() {
		<-ctx.Done()
		queue.ShutDown()
	}()
	sent := map[string]uint64{} // key → hash of the group last sent
	for {
		key, quit := queue.Get()
		if quit {
			return
		}
		tg := d.next(key, sent)
		queue.Done(key)
		if tg == nil {
			continue
		}
		select {
		case ch <- []*targetgroup.Group{tg}:
		case <-ctx.Done():
			return
		}
	}
}

// next is what to send for key, or nil when there is nothing new to say.
func (d *informerDiscoverer) next(key string, sent map[string]uint64) *targetgroup.Group {
	o, exists, err := d.informer.GetStore().GetByKey(key)
	if err == nil && exists {
		tg, discovered := d.build(o)
		if discovered {
			if tg == nil {
				return nil
			}
			h := groupHash(tg)
			if last, ok := sent[key]; ok && last == h {
				return nil
			}
			sent[key] = h
			return tg
		}
	}
	if _, ok := sent[key]; !ok {
		return nil
	}
	delete(sent, key)
	return &targetgroup.Group{Source: d.source(key)}
}

// groupHash identifies a group's labels and targets, in order.
func groupHash(tg *targetgroup.Group) uint64 {
	h := fnv.New64a()
	var b [8]byte
	put := func(ls model.LabelSet) {
		f := uint64(ls.Fingerprint())
		for i := range b {
			b[i] = byte(f >> (8 * i))
		}
		_, _ = h.Write(b[:])
	}
	_, _ = h.Write([]byte(tg.Source))
	put(tg.Labels)
	for _, t := range tg.Targets {
		put(t)
	}
	return h.Sum64()
}
