package server

import (
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/procfs"
	genericapiserver "k8s.io/apiserver/pkg/server"
)

// fakeRuntime records the GC percentages and memory limits a
// listHeadroom sets; its memory limit starts at limit.
type fakeRuntime struct {
	mu     sync.Mutex
	set    []int
	limit  int64
	limits []int64
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

// newTestHeadroom lends 8 KiB per item on a live heap of 80 MiB, in a
// cluster of 10,000 pods and 100 nodes, with no peak to keep under.
func newTestHeadroom(linger time.Duration) (*listHeadroom, *fakeRuntime) {
	f := &fakeRuntime{limit: math.MaxInt64}
	h := &listHeadroom{perItem: 8 << 10, linger: linger, setGCPercent: f.setGCPercent, setMemoryLimit: f.setMemoryLimit,
		liveHeap: func() uint64 { return 80 << 20 }, peakLimit: func() (int64, int64, bool) { return 0, 0, false }}
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

// TestListHeadroomStaysUnderThePeak: a list borrows at most what the
// resident set is below its peak, with no room nothing is lent, and while
// anything is lent the memory limit is the peak's (or the one already set,
// if lower), restored when the headroom is taken back.
func TestListHeadroomStaysUnderThePeak(t *testing.T) {
	const peak = 300 << 20 // the limit peakLimit gives
	for _, c := range []struct {
		name       string
		room       int64
		saved      int64   // the memory limit before the list
		want       []int   // GC percentages set by a pod list, then by its end
		wantLimits []int64 // memory limits set by the list, then by its end
	}{
		{"room for all", 100 << 20, math.MaxInt64, []int{105, 25}, []int64{peak, math.MaxInt64}}, // 64 MiB: 80 points
		{"room for part", 20 << 20, math.MaxInt64, []int{50, 25}, []int64{peak, math.MaxInt64}},  // 20 MiB: 25 points
		{"a lower limit stays", 20 << 20, 250 << 20, []int{50, 25}, []int64{250 << 20, 250 << 20}},
		{"no room", 0, math.MaxInt64, nil, nil},                        // nothing lent, nothing to take back
		{"over the peak already", -(5 << 20), math.MaxInt64, nil, nil}, // the resident set passed it
	} {
		t.Run(c.name, func(t *testing.T) {
			h, f := newTestHeadroom(time.Hour)
			f.limit = c.saved
			h.peakLimit = func() (int64, int64, bool) { return peak, c.room, true }
			h.enable(25, 64<<20)
			h.enter(false)()
			h.takeBack()
			if got := f.calls(); !slices.Equal(got, c.want) {
				t.Errorf("GC percent set %v, want %v", got, c.want)
			}
			if !slices.Equal(f.limits, c.wantLimits) {
				t.Errorf("memory limits set %v, want %v", f.limits, c.wantLimits)
			}
		})
	}
}

// TestListHeadroomLimitFollowsThePeak: while headroom is lent, each list
// sets the memory limit from the peak as it is now, since a live heap that
// grew past the soft limit raised it.
func TestListHeadroomLimitFollowsThePeak(t *testing.T) {
	h, f := newTestHeadroom(time.Hour)
	peak := int64(300 << 20)
	h.peakLimit = func() (int64, int64, bool) { return peak, 100 << 20, true }
	h.enable(25, 64<<20)
	h.enter(false)()
	peak = 320 << 20
	h.enter(false)()
	h.takeBack()
	if want := []int64{300 << 20, 320 << 20, math.MaxInt64}; !slices.Equal(f.limits, want) {
		t.Errorf("memory limits set %v, want %v", f.limits, want)
	}
	if want := []int{105, 25}; !slices.Equal(f.calls(), want) {
		t.Errorf("GC percent set %v, want %v", f.calls(), want)
	}
}

// parseResidentSet reads status as procfs reads /proc/PID/status.
func parseResidentSet(t *testing.T, status string) (resident, error) {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "1", "status"), []byte(status), 0o644); err != nil {
		t.Fatal(err)
	}
	fs, err := procfs.NewFS(root)
	if err != nil {
		t.Fatal(err)
	}
	p, err := fs.Proc(1)
	if err != nil {
		t.Fatal(err)
	}
	return residentSetOf(p)
}

func TestParseResidentSet(t *testing.T) {
	r, err := parseResidentSet(t, "Name:\tmetrics-gateway\nVmPeak:\t 2000000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  143360 kB\n"+
		"RssAnon:\t  122880 kB\nRssFile:\t   19456 kB\nRssShmem:\t    1024 kB\nThreads:\t12\n")
	if want := (resident{rss: 140 << 20, hwm: 200 << 20, file: 20 << 20}); err != nil || r != want {
		t.Errorf("got %+v, err %v; want %+v", r, err, want)
	}
	for _, bad := range []string{"", "VmRSS:\t 12 kB\n", "VmHWM:\t x kB\nVmRSS:\t 12 kB\n"} {
		if _, err := parseResidentSet(t, bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	// The process's own, where there is a /proc.
	if r, err := residentSet(); err == nil && (r.rss <= 0 || r.hwm < r.rss || r.file <= 0 || r.file > r.rss) {
		t.Errorf("this process: %+v", r)
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
