package server

import (
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

// fakeRuntime records the GC percentages a listHeadroom sets.
type fakeRuntime struct {
	mu  sync.Mutex
	set []int
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
	f := &fakeRuntime{}
	h := &listHeadroom{perItem: 8 << 10, linger: linger, setGCPercent: f.setGCPercent, liveHeap: func() uint64 { return 80 << 20 },
		peakRoom: func(int) (int64, bool) { return 0, false }}
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

// TestListHeadroomStaysUnderThePeak: what is lent never takes the resident
// set past its high-water mark; with no room at all nothing is lent.
func TestListHeadroomStaysUnderThePeak(t *testing.T) {
	for _, c := range []struct {
		name string
		room int64
		want []int // GC percentages set by a pod list, then by its end
	}{
		{"room for all", 100 << 20, []int{105, 25}}, // 64 MiB: 80 points
		{"room for part", 20 << 20, []int{50, 25}},  // 20 MiB: 25 points
		{"no room", 0, nil},                         // nothing lent, nothing to take back
		{"over the peak already", -(5 << 20), nil},  // the base target alone passes it
	} {
		t.Run(c.name, func(t *testing.T) {
			h, f := newTestHeadroom(time.Hour)
			var askedBase int
			h.peakRoom = func(base int) (int64, bool) { askedBase = base; return c.room, true }
			h.enable(25, 64<<20)
			h.enter(false)()
			h.takeBack()
			if got := f.calls(); !slices.Equal(got, c.want) {
				t.Errorf("GC percent set %v, want %v", got, c.want)
			}
			if askedBase != 25 {
				t.Errorf("room asked above a base of %d, want 25", askedBase)
			}
		})
	}
}

// parseResidentSet reads status as procfs reads /proc/PID/status.
func parseResidentSet(t *testing.T, status string) (rss, hwm int64, err error) {
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
	rss, hwm, err := parseResidentSet(t, "Name:\tmetrics-gateway\nVmPeak:\t 2000000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  143360 kB\nThreads:\t12\n")
	if err != nil || rss != 140<<20 || hwm != 200<<20 {
		t.Errorf("got rss %d, hwm %d, err %v; want %d, %d", rss, hwm, err, 140<<20, 200<<20)
	}
	for _, bad := range []string{"", "VmRSS:\t 12 kB\n", "VmHWM:\t x kB\nVmRSS:\t 12 kB\n"} {
		if _, _, err := parseResidentSet(t, bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	// The process's own, where there is a /proc.
	if rss, hwm, err := residentSet(); err == nil && (rss <= 0 || hwm < rss) {
		t.Errorf("this process: VmRSS %d, VmHWM %d", rss, hwm)
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
