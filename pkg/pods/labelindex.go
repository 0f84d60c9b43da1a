package pods

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/tools/cache"
)

// Why a label index: the HPA controller asks for one namespace's pods
// that match a label selector, every sync, for every HPA; so does the
// custom metrics API for a Pods metric. client-go's listers find the
// namespace's pods by its index and then match every one of them: 1,000
// label maps read for the 100 pods of one HPA, 0.39 ms of a 2.8 ms request
// at 100x70 (docs/benchmarks.md), where the label index hands over the 100
// whose label has the selector's value and matches only those.

// LabelIndex indexes pods by namespace, label and value: one index value
// per label of the pod (labelIndexValue).
const LabelIndex = "namespace-label"

// unindexed are labels that the controllers set to a value per revision
// or per pod: an HPA's selector (its workload's) never holds them, and
// indexing them would hold a small set per ReplicaSet or per pod. Measured
// with 30,000 pods: the index holds about 1 MB per label the pods carry
// (1.0 MB for one label, 4.3 MB for four with pod-template-hash left out);
// indexing pod-template-hash too, one value per 10 pods, made it 6.2 MB
// and 17,000 objects for the GC instead of 2,000. A selector that requires
// only these labels is answered by matching the whole namespace.
var unindexed = map[string]bool{
	appsv1.DefaultDeploymentUniqueLabelKey: true,
	appsv1.ControllerRevisionHashLabelKey:  true,
	appsv1.StatefulSetPodNameLabel:         true,
	appsv1.PodIndexLabel:                   true,
	batchv1.JobCompletionIndexAnnotation:   true, // a label as well
}

// Indexers are the pod informer's: by namespace, and by label within the
// namespace.
func Indexers() cache.Indexers {
	return cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc, LabelIndex: labelIndexFunc}
}

// labelIndexValue names the pods of namespace ns whose label key has value
// v. A namespace holds no "/" and a label key no "=", so no two triples
// share a name.
func labelIndexValue(ns, key, v string) string {
	return ns + "/" + key + "=" + v
}

func labelIndexFunc(obj any) ([]string, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	ls := m.GetLabels()
	if len(ls) == 0 {
		return nil, nil
	}
	out := make([]string, 0, len(ls))
	for k, v := range ls {
		if !unindexed[k] {
			out = append(out, labelIndexValue(m.GetNamespace(), k, v))
		}
	}
	return out, nil
}

// NewLister lists the objects of an indexer with Indexers: like
// cache.NewGenericLister, except that a namespace's objects are found by
// the label index when the selector requires a label to equal one value
// or one of a few.
func NewLister(indexer cache.Indexer) cache.GenericLister {
	return lister{GenericLister: cache.NewGenericLister(indexer, podsResource), indexer: indexer}
}

type lister struct {
	cache.GenericLister
	indexer cache.Indexer
}

func (l lister) ByNamespace(ns string) cache.GenericNamespaceLister {
	return namespaceLister{GenericNamespaceLister: l.GenericLister.ByNamespace(ns), indexer: l.indexer, ns: ns}
}

type namespaceLister struct {
	cache.GenericNamespaceLister
	indexer cache.Indexer
	ns      string
}

// List answers what the namespace lister's List answers, in another order.
func (l namespaceLister) List(s labels.Selector) ([]runtime.Object, error) {
	values, ok := indexValues(l.ns, s)
	if !ok {
		return l.GenericNamespaceLister.List(s)
	}
	var out []runtime.Object
	for _, v := range values {
		objs, err := l.indexer.ByIndex(LabelIndex, v)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			obj, ok := o.(runtime.Object)
			if !ok {
				return nil, fmt.Errorf("pod cache holds %T, not a runtime.Object", o)
			}
			m, err := meta.Accessor(obj)
			if err != nil {
				return nil, err
			}
			if s.Matches(labels.Set(m.GetLabels())) {
				out = append(out, obj)
			}
		}
	}
	return out, nil
}

// indexValues returns the label index values that hold every object of
// namespace ns matching s, from the requirement of s with the fewest
// values among those that name them (=, ==, in) of an indexed label, or
// false when there is none: no namespace (the index is per namespace), a
// selector of only !=, notin, exists and !exists (or none: everything), or
// of unindexed labels.
func indexValues(ns string, s labels.Selector) ([]string, bool) {
	if ns == "" {
		return nil, false
	}
	reqs, selectable := s.Requirements()
	if !selectable {
		return nil, false
	}
	best := -1
	for i, r := range reqs {
		switch r.Operator() {
		case selection.Equals, selection.DoubleEquals, selection.In:
			if unindexed[r.Key()] {
				continue
			}
			if best < 0 || r.Values().Len() < reqs[best].Values().Len() {
				best = i
			}
		}
	}
	if best < 0 {
		return nil, false
	}
	r := reqs[best]
	out := make([]string, 0, r.Values().Len())
	for v := range r.Values() {
		out = append(out, labelIndexValue(ns, r.Key(), v))
	}
	return out, true
}
