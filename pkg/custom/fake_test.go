package custom

import (
	"sort"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/metrics-gateway/metrics-gateway/pkg/rules"
	"github.com/metrics-gateway/metrics-gateway/pkg/rules/rulestest"
)

// fakeMapper knows the resources the tests use, singular and plural.
type fakeMapper = rulestest.Mapper

var _ rules.ResourceMapper = fakeMapper{}

// fakeLister holds object labels by resource and namespace.
type fakeLister struct {
	objects map[schema.GroupResource]map[string]map[string]labels.Set // gr → namespace → name → labels
}

var _ ObjectLister = (*fakeLister)(nil)

func (l *fakeLister) ListNames(gr schema.GroupResource, namespace string, sel labels.Selector) ([]string, error) {
	var out []string
	for name, ls := range l.objects[gr][namespace] {
		if sel.Matches(ls) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out, nil
}

// fakeClock is advanced by hand, so cache expiry is tested without sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
