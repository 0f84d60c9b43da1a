package server

import (
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	genericapiserver "k8s.io/apiserver/pkg/server"
)

// fakeRuntime records the GC percentages and memory limits a
// listHeadroom sets; its memory limit starts at limit.
type fakeRuntime struct {
	mu     sync.Mutex
	set    []int
	limit  int64
	limits []int64
	// held and live are what memory reports.
	held int64
	live uint64
}

func (f *fakeRuntime) memory() (int64, uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.held, f.live
}

func (f *fakeRuntime) setMemory(held int64, live uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.held, f.live = held, live
}

func (f *fakeRuntime) limitsSet() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.limits)
}

func (f *fakeRuntime) setMemoryLimit(l int64) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.limit
	if l >= 0 { // a negative limit only reads it, as debug.SetMemoryLimit
		f.limit = l
		f.limits = append(f.limits, l)
	}
	return old
}

func (f *fakeRuntime) setGCPercent(p int) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.set = append(f.set, p)
	return 0
}

func (f *fakeRuntime) calls() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.set)
}

// newTestHeadroom lends 8 KiB per item on a live heap of 80 MiB, with the
// runtime holding 100 MiB, in a cluster of 10,000 pods and 100 nodes.
func newTestHeadroom(linger time.Duration) (*listHeadroom, *fakeRuntime) {
	f := &fakeRuntime{limit: math.MaxInt64, held: 100 << 20, live: 80 << 20}
	h := &listHeadroom{perItem: 8 << 10, linger: linger, setGCPercent: f.setGCPercent, setMemoryLimit: f.setMemoryLimit, memory: f.memory}
	h.count(func(nodes bool) int {
		if nodes {
			return 100
		}
		return 10_000
	})
	return h, f
}

func TestListHeadroomLendsOnceAndTakesBack(t *testing.T) {
	h, f := newTestHeadroom(time.Hour) // the test fires the timer itself
	h.enable(25, 64<<20)

	leave1 := h.enter(false)
	leave2 := h.enter(false)
	// 10,000 pods × 8 KiB, at most 64 MiB, on a live heap of 80 MiB:
	// 80 percentage points above 25.
	if got := f.calls(); !slices.Equal(got, []int{105}) {
		t.Fatalf("two overlapping lists set %v, want [105] once", got)
	}
	leave1()
	h.takeBack() // a timer from before the second list must not end it
	if got := f.calls(); !slices.Equal(got, []int{105}) {
		t.Fatalf("taken back while a list was in flight: %v", got)
	}
	leave2()
	if h.restore == nil {
		t.Fatal("no restore scheduled after the last list")
	}
	// A list within the linger keeps the headroom and cancels the restore.
	leave3 := h.enter(true) // nodes: less than is lent already
	if h.restore != nil {
		t.Fatal("restore still scheduled during a list")
	}
	leave3()
	h.takeBack()
	if got := f.calls(); !slices.Equal(got, []int{105, 25}) {
		t.Fatalf("after the last list and the linger: %v, want [105 25]", got)
	}
	h.takeBack()
	if got := f.calls(); len(got) != 2 {
		t.Fatalf("taken back twice: %v", got)
	}
}

// TestListHeadroomInProportionAndTimerRestoresBase: a node list borrows
// the floor, and a pod list that follows it more; the timer restores the base.
func TestListHeadroomInProportionAndTimerRestoresBase(t *testing.T) {
	h, f := newTestHeadroom(time.Millisecond)
	h.enable(25, 64<<20)
	leave := h.enter(true) // 100 nodes × 8 KiB = 800 KiB, raised to the 8 MiB floor: 10 points
	h.enter(false)()       // 10,000 pods: capped at 64 MiB
	leave()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Equal(f.calls(), []int{35, 105, 25}) {
		if time.Now().After(deadline) {
			t.Fatalf("base not restored after the linger: %v", f.calls())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestListHeadroomHoldsACeiling: the first list of a burst sets the memory
// limit to what the runtime holds then plus the loan (or keeps a lower
// limit); later lists keep it while the garbage grows, raise it by what
// the live heap grew, and raise it to a larger loan; taking the headroom
// back restores the limit of before.
func TestListHeadroomHoldsACeiling(t *testing.T) {
	const held, mib = 100 << 20, 1 << 20
	for _, c := range []struct {
		name       string
		saved      int64   // the memory limit before the burst
		wantLimits []int64 // memory limits set by the burst, then by its end
	}{
		{"no limit before", math.MaxInt64, []int64{held + 8*mib, held + 64*mib, held + 74*mib, math.MaxInt64}},
		{"a lower limit stays", held + 30*mib, []int64{held + 8*mib, held + 30*mib, held + 30*mib}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, f := newTestHeadroom(time.Hour)
			f.limit = c.saved
			h.enable(25, 64<<20)
			h.enter(true)()                  // 100 nodes: the 8 MiB floor, 10 points
			f.setMemory(held+50*mib, 80<<20) // the lists' garbage
			h.enter(false)()                 // 10,000 pods: 64 MiB, 80 points
			h.enter(false)()                 // the same: nothing changes
			f.setMemory(held+60*mib, 90<<20) // 10 MiB more live heap
			h.enter(false)()
			h.takeBack()
			if want := []int{35, 105, 25}; !slices.Equal(f.calls(), want) {
				t.Errorf("GC percent set %v, want %v", f.calls(), want)
			}
			if got := f.limitsSet(); !slices.Equal(got, c.wantLimits) {
				t.Errorf("memory limits set %v, want %v", got, c.wantLimits)
			}
			// The next burst starts from what the runtime holds then.
			h.enter(false)()
			h.takeBack()
			if got := f.limitsSet(); got[len(got)-2] != min(held+60*mib+64*mib, c.saved) {
				t.Errorf("the next burst's ceiling: %v", got)
			}
		})
	}
}

// TestListHeadroomBeforeTheFirstGC: with no live heap measured yet there
// is nothing to lend against, and nothing is set.
func TestListHeadroomBeforeTheFirstGC(t *testing.T) {
	h, f := newTestHeadroom(time.Millisecond)
	f.setMemory(100<<20, 0)
	h.enable(25, 64<<20)
	h.enter(false)()
	time.Sleep(5 * time.Millisecond)
	h.takeBack()
	if len(f.calls()) != 0 || len(f.limitsSet()) != 0 {
		t.Errorf("set GC percent %v, memory limits %v", f.calls(), f.limitsSet())
	}
}

// TestRuntimeMemory: the runtime's own figures, as the soft memory limit
// counts them.
func TestRuntimeMemory(t *testing.T) {
	runtime.GC()
	held, live := runtimeMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if live == 0 || held <= int64(live) || uint64(held) > ms.Sys {
		t.Errorf("held %d, live %d; Sys %d", held, live, ms.Sys)
	}
}

func TestListHeadroomDisabled(t *testing.T) {
	for name, enable := range map[string]func(h *listHeadroom){
		"never enabled": func(*listHeadroom) {},
		"0 bytes":       func(h *listHeadroom) { h.enable(25, 0) },
	} {
		t.Run(name, func(t *testing.T) {
			h, f := newTestHeadroom(time.Millisecond)
			enable(h)
			h.enter(false)()
			time.Sleep(5 * time.Millisecond)
			if got := f.calls(); len(got) != 0 {
				t.Fatalf("set GC percent %v", got)
			}
		})
	}
}

func TestWithListHeadroomLendsToKubectlTopOnly(t *testing.T) {
	h, f := newTestHeadroom(time.Hour)
	h.enable(25, 64<<20)
	var lentDuring []bool
	api := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		h.mu.Lock()
		lentDuring = append(lentDuring, h.lent > 0 && h.inflight > 0)
		h.mu.Unlock()
	})
	handler := withListHeadroom(h, func(inner http.Handler, _ *genericapiserver.Config) http.Handler { return inner })(api, nil)
	for _, c := range []struct {
		method, target string
		lends          bool
	}{
		{"GET", "/apis/metrics.k8s.io/v1beta1/pods", true},
		{"GET", "/apis/metrics.k8s.io/v1beta1/namespaces/big/pods", true},
		{"GET", "/apis/metrics.k8s.io/v1beta1/nodes", true},
		{"GET", "/apis/metrics.k8s.io/v1beta1/namespaces/big/pods?labelSelector=app%3Dweb", false},
		{"GET", "/apis/metrics.k8s.io/v1beta1/namespaces/big/pods/web-1", false},
		{"GET", "/apis/metrics.k8s.io/v1beta1/nodes/node-a", false},
		{"GET", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/big/pods/*/http_requests", false},
		{"POST", "/apis/metrics.k8s.io/v1beta1/pods", false},
	} {
		lentDuring = nil
		handler.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(c.method, c.target, nil))
		if len(lentDuring) != 1 || lentDuring[0] != c.lends {
			t.Errorf("%s %s: lent %v, want %v", c.method, c.target, lentDuring, c.lends)
		}
		h.takeBack()
	}
	if got := f.calls(); len(got) != 6 {
		t.Errorf("GC percent set %v: want lent and taken back for each of the 3 lists", got)
	}
}

// TestGCFloor: below a live heap of floor × 100 / gogc the base target
// leaves floor bytes of headroom; above it gogc rules. While a list
// borrows, the new base waits for the loan to be given back.
func TestGCFloor(t *testing.T) {
	h, f := newTestHeadroom(time.Hour)
	h.enable(25, 64<<20)
	h.keepFloor(25, 16<<20)
	f.setMemory(40<<20, 20<<20) // 16 MiB on 20 MiB live: 80%
	h.followFloor()
	if got := f.calls(); !slices.Equal(got, []int{80}) {
		t.Fatalf("on a 20 MiB live heap: %v, want [80]", got)
	}
	h.followFloor()               // unchanged: not set again
	f.setMemory(200<<20, 100<<20) // 25% of 100 MiB is more than 16 MiB
	h.followFloor()
	if got := f.calls(); !slices.Equal(got, []int{80, 25}) {
		t.Fatalf("on a 100 MiB live heap: %v, want [80 25]", got)
	}

	// A list borrows 64 MiB on 20 MiB live (320 points above the base);
	// the floor's new base is set when the loan is given back.
	f.setMemory(40<<20, 20<<20)
	leave := h.enter(false)
	h.followFloor()
	leave()
	h.takeBack()
	if got := f.calls(); !slices.Equal(got, []int{80, 25, 345, 80}) {
		t.Fatalf("a list while the floor rose: %v, want [80 25 345 80]", got)
	}

	// Without lending, the floor sets the percentage itself, once per
	// change.
	h.enable(25, 0)
	h.keepFloor(25, 16<<20)
	h.followFloor()
	h.followFloor()
	f.setMemory(200<<20, 100<<20)
	h.followFloor()
	h.followFloor()
	if got := f.calls(); !slices.Equal(got, []int{80, 25, 345, 80, 80, 25}) {
		t.Fatalf("without lending: %v, want [... 80 25]", got)
	}

	// 0 keeps gogc.
	h.keepFloor(25, 0)
	f.setMemory(40<<20, 1<<20)
	h.followFloor()
	if got := f.calls(); len(got) != 6 {
		t.Fatalf("with no floor: %v, want nothing more set", got)
	}
}
