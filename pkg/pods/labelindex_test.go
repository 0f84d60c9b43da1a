package pods

import (
	"fmt"
	"slices"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
)

// countingIndexer counts the label index's lookups.
type countingIndexer struct {
	cache.Indexer
	byLabel int
}

func (c *countingIndexer) ByIndex(name, value string) ([]any, error) {
	if name == LabelIndex {
		c.byLabel++
	}
	return c.Indexer.ByIndex(name, value)
}

func podWith(ns, name string, ls map[string]string) *Pod {
	return &Pod{PartialObjectMetadata: metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: ls}}}
}

// TestLabelIndexListsWhatTheNamespaceListerLists compares the label
// index's answers with client-go's namespace lister (every pod of the
// namespace matched) for selectors of every operator, after adds, label
// changes and deletes, and checks which selectors the index answers.
func TestLabelIndexListsWhatTheNamespaceListerLists(t *testing.T) {
	idx := &countingIndexer{Indexer: cache.NewIndexer(cache.MetaNamespaceKeyFunc, Indexers())}
	for i := range 60 {
		ls := map[string]string{"app": fmt.Sprintf("app-%d", i%4), "tier": []string{"web", "db", "cache"}[i%3], "pod-template-hash": fmt.Sprintf("h%d", i%8)}
		if i%5 == 0 {
			ls["app.kubernetes.io/name"] = "x" // a key holding a "/"
		}
		if i%7 == 0 {
			ls = nil
		}
		for _, ns := range []string{"a", "b"} {
			if err := idx.Add(podWith(ns, fmt.Sprintf("p-%d", i), ls)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Relabel, unlabel and delete some pods of a: the index must follow.
	for i := range 10 {
		if err := idx.Update(podWith("a", fmt.Sprintf("p-%d", i), map[string]string{"app": "app-9", "tier": "web"})); err != nil {
			t.Fatal(err)
		}
	}
	if err := idx.Update(podWith("a", "p-11", nil)); err != nil {
		t.Fatal(err)
	}
	for i := 20; i < 25; i++ {
		if err := idx.Delete(podWith("a", fmt.Sprintf("p-%d", i), nil)); err != nil {
			t.Fatal(err)
		}
	}
	l := NewLister(idx)
	for _, tc := range []struct {
		sel     string
		indexed bool
	}{
		{"app=app-1", true},
		{"app==app-1", true},
		{"app in (app-1,app-2)", true},
		{"app=app-9", true},
		{"app=app-1,tier=web", true},
		{"tier in (web,db,cache),app=app-0", true},
		{"app=app-1,tier!=web", true},
		{"app.kubernetes.io/name=x", true},
		{"app=missing", true},
		{"pod-template-hash=h3", false},
		{"pod-template-hash=h3,tier=db", true},
		{"app!=app-1", false},
		{"app notin (app-1)", false},
		{"app", false},
		{"!app", false},
		{"", false},
	} {
		sel, err := labels.Parse(tc.sel)
		if err != nil {
			t.Fatalf("%q: %v", tc.sel, err)
		}
		for _, ns := range []string{"a", "b", "c"} {
			var want []string
			if err := cache.ListAllByNamespace(idx.Indexer, ns, sel, func(o any) { want = append(want, key(o)) }); err != nil {
				t.Fatal(err)
			}
			before := idx.byLabel
			objs, err := l.ByNamespace(ns).List(sel)
			if err != nil {
				t.Fatalf("%s %q: %v", ns, tc.sel, err)
			}
			got := make([]string, 0, len(objs))
			for _, o := range objs {
				got = append(got, key(o))
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s %q: got %v, want %v", ns, tc.sel, got, want)
			}
			if used := idx.byLabel > before; used != tc.indexed {
				t.Errorf("%s %q: label index used %v, want %v", ns, tc.sel, used, tc.indexed)
			}
		}
	}
	// All namespaces: the index is per namespace, the lister scans.
	sel := labels.SelectorFromSet(labels.Set{"app": "app-1"})
	before := idx.byLabel
	all, err := l.List(sel)
	if err != nil {
		t.Fatal(err)
	}
	if idx.byLabel != before || len(all) == 0 {
		t.Errorf("all namespaces: %d pods, label index used %d times", len(all), idx.byLabel-before)
	}
}

func key(o any) string {
	k, err := cache.MetaNamespaceKeyFunc(o)
	if err != nil {
		panic(err)
	}
	return k
}

// TestLabelIndexRefusesWhatIsNotAnObject: a cache holding something that
// has metadata but is not a runtime.Object gets an error, not a panic.
func TestLabelIndexRefusesWhatIsNotAnObject(t *testing.T) {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, Indexers())
	if err := idx.Add(&metav1.ObjectMeta{Namespace: "a", Name: "m", Labels: map[string]string{"app": "x"}}); err != nil {
		t.Fatal(err)
	}
	if objs, err := NewLister(idx).ByNamespace("a").List(labels.SelectorFromSet(labels.Set{"app": "x"})); err == nil {
		t.Fatalf("got %v, want an error", objs)
	}
}
