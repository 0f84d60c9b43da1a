package scrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/storage"
	"sigs.k8s.io/yaml"
)

// TestPodBytesInFlight: pods streaming big bodies slowly, all scraped at
// once, have more bytes read and their scrape not yet reported than the
// bound without it, and no more than the bound (and the reads waiting for
// room) with it, measured at the sockets and at the reports, beneath the
// gate. Pod scrapes that find no room fail and are counted and logged;
// the kubelet job of the same manager keeps its keep-alive connection and
// scrapes on time throughout.
func TestPodBytesInFlight(t *testing.T) {
	// Small enough bodies that the race detector on two busy cores
	// parses every pod's within the scrape timeout: the test is about
	// bytes in flight, not parsing speed.
	const (
		pods  = 24
		body  = 256 << 10
		bound = 1 << 20
	)
	// A read takes up to podReadChunk from its socket before it waits.
	limit := int64(bound + pods*podReadChunk)
	for _, tc := range []struct {
		name  string
		bound int64
	}{
		{"unbounded", 0},
		{"bounded", bound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addrs, badRequests := startSlowPods(t, pods, body, podReadChunk, 40*time.Millisecond)
			kubelet, kubeletConns := startCountingKubelet(t)
			doc := podBytesScrapeConfig(t, addrs, kubelet)
			var logs syncBuffer
			logger := slog.New(slog.NewTextHandler(&logs, nil))
			cfg, err := LoadConfig(logger, doc)
			if err != nil {
				t.Fatal(err)
			}
			meter := newPodMeter(addrs)
			m, err := NewManager(cfg, meter, ManagerOptions{PodMaxBytesInFlight: tc.bound, dial: meter.dial}, logger, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			go m.Run(ctx)
			time.Sleep(4500 * time.Millisecond)
			cancel()
			m.Stop()

			peak, podUp, podDown, kubeletUp, kubeletDown := meter.results()
			t.Logf("peak bytes read from pods, scrape not reported: %.2f MiB (bound %.2f MiB + one read per pod %.2f MiB = %.2f MiB); pod scrapes %d up, %d down; kubelet scrapes %d up, %d down over %d connections",
				float64(peak)/(1<<20), float64(bound)/(1<<20), float64(pods*podReadChunk)/(1<<20), float64(limit)/(1<<20),
				podUp, podDown, kubeletUp, kubeletDown, kubeletConns.Load())
			if tc.bound == 0 {
				// Shows the measurement can fail: without the bound the
				// pods' bytes in flight pass what the bounded run must
				// stay under.
				if peak <= limit {
					t.Errorf("without a bound the peak %d stayed under %d: the test cannot tell", peak, limit)
				}
			} else {
				if peak > limit {
					t.Errorf("peak bytes in flight %d, want at most %d", peak, limit)
				}
				if podUp == 0 {
					t.Error("no pod scrape succeeded under the bound")
				}
				failures := testutil.ToFloat64(m.recorder.failures.WithLabelValues(PodJobName))
				if failures == 0 || !strings.Contains(logs.String(), "--pod-scrape-max-bytes-in-flight") {
					t.Errorf("pod scrapes that found no room: %v failures counted, log:\n%s", failures, logs.String())
				}
			}
			if n := badRequests.Load(); n > 0 {
				t.Errorf("%d pod scrapes without %s or asking for compression", n, podScrapeHeader)
			}
			if kubeletUp < 3 || kubeletDown > 0 {
				t.Errorf("kubelet scrapes: %d up, %d down in 4.5s at 750ms", kubeletUp, kubeletDown)
			}
			if n := kubeletConns.Load(); n > 2 {
				t.Errorf("kubelet scrapes opened %d connections: keep-alive lost", n)
			}
		})
	}
}

// startCountingKubelet starts a kubelet serving one sample, counting the
// connections it accepts; it returns its host:port.
func startCountingKubelet(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	conns := &atomic.Int64{}
	kubelet := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "k 1\n") }))
	kubelet.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	kubelet.Start()
	t.Cleanup(kubelet.Close)
	return strings.TrimPrefix(kubelet.URL, "http://"), conns
}

// podBytesScrapeConfig is TestPodBytesInFlight's: the pods every second
// with a 900 ms timeout, the kubelet every 750 ms.
func podBytesScrapeConfig(t *testing.T, pods []string, kubelet string) string {
	t.Helper()
	podJob := map[string]any{
		"job_name": PodJobName, "scrape_interval": "1s", "scrape_timeout": "900ms", "body_size_limit": "2MiB",
		"static_configs": []any{map[string]any{"targets": pods}},
	}
	podScrapeHTTP(podJob)
	doc, err := yaml.Marshal(map[string]any{"scrape_configs": []any{podJob, map[string]any{
		"job_name": KubeletJobName, "scrape_interval": "750ms", "scrape_timeout": "750ms",
		"static_configs": []any{map[string]any{"targets": []string{kubelet}}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(doc)
}

// startSlowPods starts n pods serving a body of size bytes in chunks, one
// per every. It counts requests without the pod job's marker or asking for
// compression.
func startSlowPods(t *testing.T, n, size, chunk int, every time.Duration) ([]string, *atomic.Int64) {
	t.Helper()
	bad := &atomic.Int64{}
	padding := []byte("# " + strings.Repeat("x", chunk-3) + "\n")
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(podScrapeHeader) != PodJobName || r.Header.Get("Accept-Encoding") != "identity" {
			bad.Add(1)
		}
		for sent := 0; sent < size; sent += chunk {
			p := padding
			if sent == 0 {
				p = append([]byte("a 1\n# "), padding[6:]...)
			}
			if _, err := w.Write(p); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(every)
		}
	})
	var addrs []string
	for range n {
		s := httptest.NewServer(handler)
		t.Cleanup(s.Close)
		addrs = append(addrs, strings.TrimPrefix(s.URL, "http://"))
	}
	return addrs, bad
}

// podMeter measures the bytes read from the pods' sockets for scrapes whose
// report has not yet been appended, beneath the gate: it is the dialer the
// gate dials with and the storage the scrape loop appends to.
type podMeter struct {
	pods map[string]bool

	mu             sync.Mutex
	unreported     map[string]int64
	inFlight, peak int64
	ups            map[string]int
}

func newPodMeter(addrs []string) *podMeter {
	m := &podMeter{pods: map[string]bool{}, unreported: map[string]int64{}, ups: map[string]int{}}
	for _, a := range addrs {
		m.pods[a] = true
	}
	return m
}

func (m *podMeter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil || !m.pods[addr] {
		return c, err
	}
	return meteredConn{Conn: c, m: m, addr: addr}, nil
}

type meteredConn struct {
	net.Conn
	m    *podMeter
	addr string
}

func (c meteredConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.m.mu.Lock()
	c.m.unreported[c.addr] += int64(n)
	c.m.inFlight += int64(n)
	c.m.peak = max(c.m.peak, c.m.inFlight)
	c.m.mu.Unlock()
	return n, err
}

func (m *podMeter) results() (peak int64, podUp, podDown, kubeletUp, kubeletDown int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peak, m.ups[PodJobName+"/1"], m.ups[PodJobName+"/0"], m.ups[KubeletJobName+"/1"], m.ups[KubeletJobName+"/0"]
}

func (m *podMeter) AppenderV2(context.Context) storage.AppenderV2 { return meterAppender{m} }

type meterAppender struct{ m *podMeter }

func (a meterAppender) Append(_ storage.SeriesRef, ls labels.Labels, _, _ int64, v float64, _ *histogram.Histogram, _ *histogram.FloatHistogram, _ storage.AppendV2Options) (storage.SeriesRef, error) {
	if ls.Get(model.MetricNameLabel) != scrapeHealthMetric || math.IsNaN(v) {
		return 0, nil
	}
	a.m.mu.Lock()
	defer a.m.mu.Unlock()
	a.m.ups[fmt.Sprintf("%s/%v", ls.Get(model.JobLabel), v)]++
	instance := ls.Get(model.InstanceLabel)
	a.m.inFlight -= a.m.unreported[instance]
	a.m.unreported[instance] = 0
	return 0, nil
}
func (meterAppender) Commit() error   { return nil }
func (meterAppender) Rollback() error { return nil }

// TestPodBytesCharges: what one target is charged, and when it is returned.
func TestPodBytesCharges(t *testing.T) {
	const limit, perScrape, initial = 100, 40, 12
	g := testPodBytes(t, limit, perScrape)
	if g.initial != initial {
		t.Fatalf("a new target reserves %d, want an eighth of the bound, %d", g.initial, initial)
	}
	ctx := context.Background()
	held := func() int64 { g.mu.Lock(); defer g.mu.Unlock(); return g.inFlight }
	steps := []struct {
		name string
		do   func() error
		want int64
	}{
		{"a new target's first byte reserves an eighth of the bound", func() error { return g.charge(ctx, "a:1", 1, false) }, initial},
		{"bytes read past it are charged", func() error { return g.charge(ctx, "a:1", 19, false) }, 20},
		{"up to the per-scrape limit", func() error { return g.charge(ctx, "a:1", 100, false) }, perScrape},
		{"returned by the report", func() error { g.reported("a:1", 1); return nil }, 0},
		{"the next scrape reserves the last one's size", func() error { return g.charge(ctx, "a:1", 1, false) }, perScrape},
		{"a smaller successful scrape lowers it", func() error { g.reported("a:1", 1); return nil }, 0},
		{"to its own size", func() error { return g.charge(ctx, "a:1", 1, false) }, 1},
		{"a compressed body is charged the limit", func() error { return g.charge(ctx, "a:1", 1, true) }, perScrape},
		{"a failed scrape keeps the largest", func() error { g.reported("a:1", 0); return g.charge(ctx, "a:1", 1, false) }, perScrape},
		{"targets add up", func() error { return g.charge(ctx, "b:1", 30, false) }, perScrape + 30},
		{"a stale report forgets the target", func() error {
			g.reported("a:1", math.Float64frombits(value.StaleNaN))
			return g.charge(ctx, "a:1", 5, false)
		}, 30 + initial},
	}
	for _, s := range steps {
		if err := s.do(); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if got := held(); got != s.want {
			t.Fatalf("%s: %d bytes in flight, want %d", s.name, got, s.want)
		}
	}

	// A read that finds no room waits until room is returned, or until
	// its connection closes.
	if err := g.charge(ctx, "c:1", perScrape, false); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error)
	go func() { waited <- g.charge(ctx, "d:1", perScrape, false) }()
	select {
	case err := <-waited:
		t.Fatalf("charged past the limit: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.reported("c:1", 1)
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	closeAfter := func(d time.Duration) context.Context {
		closed, cancel := context.WithCancel(ctx)
		time.AfterFunc(d, cancel)
		return closed
	}
	if err := g.charge(closeAfter(20*time.Millisecond), "e:1", limit, false); !errors.Is(err, net.ErrClosed) {
		t.Errorf("a wait ended by its connection: %v, want net.ErrClosed", err)
	}
	if n := testutil.ToFloat64(g.timeouts); n != 1 {
		t.Errorf("%v timeouts counted, want 1", n)
	}

	// A scrape that ran out of time waiting to grow while holding room
	// reserves the per-scrape limit next time, so it waits holding none.
	for _, addr := range []string{"a:1", "b:1", "d:1"} {
		g.reported(addr, 1)
	}
	if n := held(); n != 0 {
		t.Fatalf("%d bytes in flight after every report", n)
	}
	for _, c := range []struct {
		addr string
		n    int64
	}{{"f:1", 1}, {"h:1", perScrape}, {"i:1", perScrape}} {
		if err := g.charge(ctx, c.addr, c.n, false); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.charge(closeAfter(20*time.Millisecond), "f:1", perScrape, false); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("grew past the limit: %v", err)
	}
	g.reported("f:1", 0)
	g.reported("h:1", 1)
	if err := g.charge(ctx, "f:1", 1, false); err != nil || held() != 2*perScrape {
		t.Errorf("after starving: %d bytes in flight (%v), want %d", held(), err, 2*perScrape)
	}
	g.reported("f:1", 0)
	before := held()

	// A charge whose report never comes is returned after maxHold.
	g.maxHold = 10 * time.Millisecond
	if err := g.charge(ctx, "g:1", 7, false); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "an unreported charge returned", func() bool { return held() == before })
}

func testPodBytes(t *testing.T, limit, perScrape int64) *podBytes {
	t.Helper()
	g, err := newPodBytes(limit, nil, nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	g.perScrape = perScrape
	g.initial = min(perScrape, limit/8)
	return g
}

// TestPodConnClassify: only plain-HTTP requests carrying the pod job's
// header are charged, wherever the writes split them.
func TestPodConnClassify(t *testing.T) {
	podReq := "GET /metrics HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nAccept: text/plain\r\n" + podScrapeHeader + ": kubernetes-pods\r\n\r\n"
	for _, tc := range []struct {
		name   string
		writes []string
		gated  bool
	}{
		{"pod request", []string{podReq}, true},
		{"pod request split at every write", strings.Split(podReq, ""), true},
		{"another job's request", []string{"GET /metrics HTTP/1.1\r\nHost: 10.0.0.1:10250\r\nAuthorization: Bearer x\r\n\r\n"}, false},
		{"the marker in a later request does not count", []string{"GET / HTTP/1.1\r\n\r\n", podReq}, false},
		{"TLS", []string{"\x16\x03\x01\x02\x00" + podReq}, false},
		{"a header block longer than searched", []string{"GET /" + strings.Repeat("a", maxRequestHead) + " HTTP/1.1\r\n"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &podConn{Conn: nopConn{}, decided: make(chan struct{})}
			for _, w := range tc.writes {
				if _, err := c.Write([]byte(w)); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case <-c.decided:
			default:
				t.Fatal("undecided")
			}
			if c.gated != tc.gated {
				t.Errorf("gated %v, want %v", c.gated, tc.gated)
			}
		})
	}
}

type nopConn struct{ net.Conn }

func (nopConn) Write(p []byte) (int, error) { return len(p), nil }

// TestEncodingSniffer: a Content-Encoding header line is found in any case
// and wherever reads split it; similar text is not.
func TestEncodingSniffer(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: gzip\r\n\r\n", true},
		{"HTTP/1.1 200 OK\r\nCONTENT-ENCODING: gzip\r\n\r\n", true},
		{"HTTP/1.1 200 OK\ncontent-encoding:gzip\n\n", true},
		{"HTTP/1.1 200 OK\r\n\n\ncontent-encoding: x\r\n", true},
		{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\na 1\n", false},
		{"HTTP/1.1 200 OK\r\nX-Content-Encoding: gzip\r\n\r\n", false},
		{"HTTP/1.1 200 OK\r\n\r\n# content-encoding: gzip\n", false},
	} {
		for split := range len(tc.in) + 1 {
			var s encodingSniffer
			got := s.scan([]byte(tc.in[:split]))
			got = s.scan([]byte(tc.in[split:])) || got
			if got != tc.want {
				t.Errorf("%q split at %d: found %v, want %v", tc.in, split, got, tc.want)
				break
			}
		}
	}
}

// TestPodBytesCompressedPod: a pod that compresses although the pod job asks
// for identity is charged the whole per-scrape limit while its scrape
// runs, however few bytes it sends.
func TestPodBytesCompressedPod(t *testing.T) {
	release := make(chan struct{})
	pod := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		<-release
	}))
	defer pod.Close()
	defer close(release)
	g := testPodBytes(t, 1<<20, 512<<10)
	c, err := g.dialContext(context.Background(), "tcp", strings.TrimPrefix(pod.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nAccept-Encoding: identity\r\n"+podScrapeHeader+": kubernetes-pods\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil || !bytes.Contains(buf[:n], []byte("Content-Encoding")) {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	g.mu.Lock()
	held := g.inFlight
	g.mu.Unlock()
	if held != 512<<10 {
		t.Errorf("%d bytes charged for a compressed response of %d, want %d", held, n, 512<<10)
	}
}
