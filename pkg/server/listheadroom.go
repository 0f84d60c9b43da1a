package server

import (
	"errors"
	"net/http"
	"runtime/debug"
	"runtime/metrics"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/procfs"

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
// It never lends past the process's resident high-water mark (peakLimit):
// the startup (WAL replay, the first lists of every Pod and Node, the
// first scrape of every kubelet) leaves a peak well above the steady
// memory, which the pod's memory limit had to hold already, and lists may
// use what lies below it. A list borrows at most what the resident set is
// below its peak, and while anything is lent the runtime's soft memory
// limit is lowered to the peak less the file-backed pages, so the runtime
// collects before its memory passes it: the GC's goal alone let the heap
// pass the peak by 32 MB at 100x70 (docs/benchmarks.md, "Lists and the
// peak").
//
// It is the only place the GC target changes after startup, and it is
// process-wide, as GOGC is. The lent headroom stays under GOMEMLIMIT: near
// the memory limit the runtime collects regardless of the target.
type listHeadroom struct {
	mu sync.Mutex
	// base is the GC percentage outside lists; 0 disables lending.
	base int
	// perItem bytes are lent per pod (or node) the cluster has, up to
	// most bytes in all.
	perItem, most int64
	// items counts the pods, or the nodes, a list may answer.
	items func(nodes bool) int
	// linger keeps the headroom between lists sent one after another.
	linger time.Duration

	inflight int
	lent     int64
	restore  *time.Timer
	// limited: the memory limit is lowered, and savedLimit is what it was.
	limited    bool
	savedLimit int64
	// setGCPercent, setMemoryLimit, liveHeap and peakLimit are the
	// runtime's and the kernel's; tests replace them.
	setGCPercent   func(int) int
	setMemoryLimit func(int64) int64
	liveHeap       func() uint64
	peakLimit      func() (limit, room int64, ok bool)
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
var gcHeadroom = &listHeadroom{perItem: listHeadroomPerItem, linger: 2 * time.Second, setGCPercent: debug.SetGCPercent, setMemoryLimit: debug.SetMemoryLimit, liveHeap: liveHeapBytes, peakLimit: peakLimit}

// enable lends up to most bytes of headroom above base during lists from
// now on; 0 bytes disables it.
func (h *listHeadroom) enable(base int, most int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.base, h.most = base, most
	if most <= 0 {
		h.base = 0
	}
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
	if h.base == 0 || h.items == nil {
		return func() {}
	}
	h.inflight++
	if h.restore != nil {
		h.restore.Stop()
		h.restore = nil
	}
	want := min(h.most, max(listHeadroomFloor, h.perItem*int64(h.items(nodes))))
	if want <= h.lent && !h.limited {
		return h.leave // lent already, with no limit to keep up to date
	}
	limit, room, bounded := h.peakLimit()
	if bounded {
		want = min(want, max(room, 0))
	}
	if live := h.liveHeap(); want > h.lent && live > 0 {
		// The target is live × (1 + GOGC/100): base's share plus want.
		h.setGCPercent(h.base + int(100*want/int64(live)))
		h.lent = want
		if bounded && !h.limited {
			h.savedLimit, h.limited = h.setMemoryLimit(-1), true
		}
	}
	if h.limited && bounded {
		// Set again on every list while lent: a live heap that outgrows the
		// limit (the soft limit lets it) raises the peak, and the limit
		// follows, so that lists sent without pause cannot hold the
		// collector at a stale limit.
		h.setMemoryLimit(min(limit, h.savedLimit))
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

// takeBack restores the base target, unless a list came in meanwhile.
func (h *listHeadroom) takeBack() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inflight > 0 || h.lent == 0 {
		return
	}
	h.setGCPercent(h.base)
	h.lent = 0
	if h.limited {
		h.setMemoryLimit(h.savedLimit)
		h.limited = false
	}
}

// liveHeapBytes is the heap the last GC cycle found live.
func liveHeapBytes() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// peakLimit says how lists can use memory below the process's resident
// high-water mark without passing it: room is what the resident set is
// below its peak (VmHWM − VmRSS), and limit the soft memory limit that keeps
// the Go runtime's memory (the anonymous pages: the binary is static) under
// the peak less the file-backed pages resident now (the executable, the
// TSDB's memory-mapped chunks). The runtime counts every heap page it has
// mapped and not returned, touched or not, so it collects before the heap
// passes the limit whatever the GC's goal. ok is false where the kernel
// does not say (no /proc): there the headroom is lent in full, with no
// limit.
func peakLimit() (limit, room int64, ok bool) {
	r, err := residentSet()
	if err != nil {
		return 0, 0, false
	}
	return r.hwm - r.file, r.hwm - r.rss, true
}

// resident is what the process's status says of its resident set, in
// bytes.
type resident struct {
	rss, hwm, file int64 // VmRSS, VmHWM, RssFile + RssShmem
}

// residentSet reads the process's resident set, its high-water mark and
// its file-backed part from /proc/self/status.
func residentSet() (resident, error) {
	p, err := procfs.Self()
	if err != nil {
		return resident{}, err
	}
	return residentSetOf(p)
}

func residentSetOf(p procfs.Proc) (resident, error) {
	st, err := p.NewStatus()
	if err != nil {
		return resident{}, err
	}
	if st.VmRSS == 0 || st.VmHWM == 0 {
		return resident{}, errors.New("no VmRSS and VmHWM in the process's status")
	}
	return resident{rss: int64(st.VmRSS), hwm: int64(st.VmHWM), file: int64(st.RssFile + st.RssShmem)}, nil
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
