package server

import (
	"net/http"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"time"

	genericapiserver "k8s.io/apiserver/pkg/server"
	metricsapi "k8s.io/metrics/pkg/apis/metrics"
)

// listHeadroom lends the garbage collector extra headroom while
// metrics.k8s.io lists are answered, and takes it back a moment after the
// last one.
//
// The gateway runs its GC at a low target (DefaultGOGC) so that its steady
// memory stays below metrics-server's: its live heap (TSDB head, scrape
// caches, informers) holds several times the objects of metrics-server's.
// A list of every pod allocates its whole answer (about 1.8 kB per pod,
// then the JSON encoder's garbage), and at that target the collector marks
// the whole live heap once or more per 7,000-pod list while it is built and
// encoded: in a profile at 100x70, 28 ms of GC work per list against
// metrics-server's 6 ms (docs/benchmarks.md). With headroom in proportion
// to the cluster for the duration, a burst of lists (kubectl top,
// dashboards) is collected every few lists instead, and the idle gateway
// keeps its low target.
//
// What is lent is held to a ceiling for the burst: at its first list the
// runtime's soft memory limit (debug.SetMemoryLimit) is set to the memory
// the Go runtime holds then plus the loan, and kept there, raised only as
// the live heap grows, until the headroom is taken back. The runtime
// counts every heap page it has mapped and not returned, touched or not,
// and collects before passing the limit whatever the GC's goal, so a
// burst's peak is the resident set at its first list plus the loan. The
// GC's goal alone let the heap pass it by about 30 MB at 100x70 while it
// marked during a list, and a limit set from the resident high-water mark
// at each list climbed with every overshoot (docs/benchmarks.md, "Lists
// and the peak").
//
// It is the only place the GC target changes after startup, and it is
// process-wide, as GOGC is. The ceiling stays under GOMEMLIMIT: near the
// memory limit the runtime collects regardless of the target.
type listHeadroom struct {
	mu sync.Mutex
	// base is the GC percentage outside lists.
	base int
	// perItem bytes are lent per pod (or node) the cluster has, up to
	// most bytes in all; 0 disables lending.
	perItem, most int64
	// items counts the pods, or the nodes, a list may answer.
	items func(nodes bool) int
	// linger keeps the headroom between lists sent one after another.
	linger time.Duration

	inflight int
	lent     int64
	restore  *time.Timer
	// While lent, the memory limit is held at the burst's ceiling:
	// heldFrom is the runtime's memory and liveFrom the live heap at the
	// burst's first list, savedLimit the limit before it and ceiling the
	// limit set now.
	heldFrom            int64
	liveFrom            uint64
	savedLimit, ceiling int64
	// gogc is the configured GC percentage and floor the least headroom
	// in bytes the base target leaves above the live heap (keepFloor); 0
	// keeps none.
	gogc  int
	floor int64
	// setGCPercent, setMemoryLimit and memory are the runtime's; tests
	// replace them.
	setGCPercent   func(int) int
	setMemoryLimit func(int64) int64
	memory         func() (held int64, live uint64)
}

// listHeadroomPerItem is what a list borrows per pod or node: about four
// times what answering and encoding one allocates (1.8 kB per pod), so that
// back-to-back lists of every pod are collected every few lists. Measured
// at 100x70 (7,000 pods): 24 MiB lent, list all PodMetrics 1.23x
// metrics-server's p50; 64 MiB, 0.98x (docs/benchmarks.md).
const listHeadroomPerItem = 8 << 10

// listHeadroomFloor is the least a list borrows (unless --list-gc-headroom
// is less): in a small cluster the base headroom is a few MB, and lists of
// a few hundred pods sent back to back still ran a mark every few lists.
const listHeadroomFloor = 8 << 20

// gcHeadroom is the process's: the GC target is process-wide.
// MemoryOptions.Apply enables it once the gateway has started, and the
// server tells it how to count pods and nodes.
var gcHeadroom = &listHeadroom{perItem: listHeadroomPerItem, linger: 2 * time.Second, setGCPercent: debug.SetGCPercent, setMemoryLimit: debug.SetMemoryLimit, memory: runtimeMemory}

// enable lends up to most bytes of headroom above base during lists from
// now on; 0 bytes disables it.
func (h *listHeadroom) enable(base int, most int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.base, h.most = base, most
}

// floorEvery is how often the base target follows the live heap.
const floorEvery = 5 * time.Second

// keepFloor raises the GC percentage outside lists, from gogc, so that the
// heap may grow by at least floor bytes past the live heap before the next
// collection, following the live heap every floorEvery from now on; a
// floor of 0 keeps gogc. A small heap at gogc collects after every few MB
// allocated: at 10x30 (a live heap of 23 MB, 6 MB of headroom at 25) the
// collector ran about twice per scrape round and during every few lists
// (docs/benchmarks.md, "GC at 10x30"). The Go runtime keeps a 4 MB floor
// of its own for the same reason. A large heap at gogc leaves more than
// the floor, and the floor changes nothing there. The process's
// gcHeadroom follows it (followFloor) every floorEvery once started.
func (h *listHeadroom) keepFloor(gogc int, floor int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gogc, h.floor = gogc, floor
}

var followingFloor sync.Once

// followFloorEvery starts following the live heap for the process's
// gcHeadroom, for the life of the process.
func followFloorEvery(d time.Duration) {
	followingFloor.Do(func() {
		go func() {
			for range time.Tick(d) {
				gcHeadroom.followFloor()
			}
		}()
	})
}

// followFloor sets the base GC percentage to what keeps the floor over the
// live heap now, if that is more than gogc.
func (h *listHeadroom) followFloor() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.floor <= 0 || h.gogc <= 0 {
		return
	}
	_, live := h.memory()
	if live == 0 {
		return
	}
	want := max(h.gogc, int((100*h.floor+int64(live)-1)/int64(live)))
	if want == h.base {
		return
	}
	h.base = want
	if h.lent > 0 {
		return // the loan is given back to the new base
	}
	h.setGCPercent(want)
}

// count sets how the pods or nodes a list may answer are counted.
func (h *listHeadroom) count(items func(nodes bool) int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.items = items
}

// enter lends headroom for a list of pods or of nodes, unless as much is
// lent already, and returns the function that ends this list's claim.
func (h *listHeadroom) enter(nodes bool) (leave func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.most <= 0 || h.items == nil {
		return func() {}
	}
	h.inflight++
	if h.restore != nil {
		h.restore.Stop()
		h.restore = nil
	}
	want := min(h.most, max(listHeadroomFloor, h.perItem*int64(h.items(nodes))))
	held, live := h.memory()
	if live == 0 {
		return h.leave // no GC cycle has finished: nothing to lend against
	}
	if h.lent == 0 {
		h.heldFrom, h.liveFrom = held, live
		h.savedLimit = h.setMemoryLimit(-1)
		h.ceiling = h.savedLimit
	}
	if want > h.lent {
		// The target is live × (1 + GOGC/100): base's share plus want.
		h.setGCPercent(h.base + int(100*want/int64(live)))
		h.lent = want
	}
	// Set on every list while lent: what the burst may hold grows with the
	// live heap (new pods, new series), never with the garbage its lists
	// leave, which is what the ceiling is there to bound.
	grown := max(int64(live)-int64(h.liveFrom), 0)
	if c := min(h.heldFrom+h.lent+grown, h.savedLimit); c != h.ceiling {
		h.setMemoryLimit(c)
		h.ceiling = c
	}
	return h.leave
}

func (h *listHeadroom) leave() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inflight--
	if h.inflight == 0 && h.lent > 0 {
		h.restore = time.AfterFunc(h.linger, h.takeBack)
	}
}

// takeBack restores the base target and the memory limit, unless a list
// came in meanwhile.
func (h *listHeadroom) takeBack() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inflight > 0 || h.lent == 0 {
		return
	}
	h.setGCPercent(h.base)
	h.setMemoryLimit(h.savedLimit)
	h.lent = 0
}

// runtimeMemory is what the Go runtime's soft memory limit counts (the
// memory it has mapped and not returned to the kernel) and the heap the
// last GC cycle found live.
func runtimeMemory() (held int64, live uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	for _, v := range s {
		if v.Value.Kind() != metrics.KindUint64 {
			return 0, 0
		}
	}
	return int64(s[0].Value.Uint64() - s[1].Value.Uint64()), s[2].Value.Uint64()
}

// isMetricsList says whether r lists PodMetrics (of all namespaces or one)
// or NodeMetrics without a label selector, as kubectl top does: an answer
// that grows with the cluster. The HPA controller always sends a selector;
// its small, frequent lists borrow nothing, so a cluster with many HPAs
// keeps the base target.
func isMetricsList(r *http.Request) (list, nodes bool) {
	if r.Method != http.MethodGet {
		return false, false
	}
	// The path first: it rules out nearly every request without parsing
	// the query string.
	rest, ok := strings.CutPrefix(r.URL.Path, "/apis/"+metricsapi.GroupName+"/")
	if !ok {
		return false, false
	}
	nodes = strings.HasSuffix(rest, "/nodes")
	if !nodes && !strings.HasSuffix(rest, "/pods") || r.URL.Query().Get("labelSelector") != "" {
		return false, false
	}
	return true, nodes
}

// withListHeadroom wraps the API handler so metrics.k8s.io lists run with
// h's headroom. It sits behind authentication and authorization: a
// request that is refused borrows nothing.
func withListHeadroom(h *listHeadroom, build func(http.Handler, *genericapiserver.Config) http.Handler) func(http.Handler, *genericapiserver.Config) http.Handler {
	if build == nil {
		build = genericapiserver.DefaultBuildHandlerChain
	}
	return func(api http.Handler, c *genericapiserver.Config) http.Handler {
		lending := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if list, nodes := isMetricsList(r); list {
				defer h.enter(nodes)()
			}
			api.ServeHTTP(w, r)
		})
		return build(lending, c)
	}
}
