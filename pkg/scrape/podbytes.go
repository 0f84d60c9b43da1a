package scrape

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/discovery"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/model/value"
	promscrape "github.com/prometheus/prometheus/scrape"
	"github.com/prometheus/prometheus/storage"
	"golang.org/x/sync/semaphore"
)

// podScrapeHeader marks the pod job's requests (podScrapeHTTP), so the
// scrape manager's dialer can tell its connections from every other job's.
const podScrapeHeader = "X-Metrics-Gateway-Scrape"

var (
	podScrapeMarker = []byte("\r\n" + podScrapeHeader + ":")
	headerEnd       = []byte("\r\n\r\n")
)

const (
	// podReadChunk is the most one read of a pod connection takes from the
	// socket before it is charged, so the charge grows with what arrives.
	podReadChunk = 16 << 10
	// maxRequestHead is how much of a plain-HTTP request is searched for
	// podScrapeHeader; a longer header block counts as a pod's.
	maxRequestHead = 64 << 10
	// tlsHandshake starts every TLS connection's first write.
	tlsHandshake = 0x16
)

// podScrapeHTTP sets what the pod job's requests need for podBytes: the
// marker header, and identity encoding, since a compressed body is read
// into memory decompressed (up to the body size limit) from few bytes on
// the wire; a pod that compresses anyway is charged that limit.
func podScrapeHTTP(job map[string]any) {
	job["enable_compression"] = false
	job["http_headers"] = map[string]any{podScrapeHeader: map[string]any{"values": []string{PodJobName}}}
}

// podBytes bounds the bytes read from annotated pods whose scrape has not
// finished. Prometheus reads a scrape's body into a buffer sized to the
// target's previous body, parses it, and only then returns the buffer, so
// without a bound N pods scraped at once hold up to N times the body size
// limit. The scrape manager dials through podBytes: connections carrying the
// pod job's request charge what they read against one budget, and a read
// that finds it spent waits until room is returned or the connection is
// closed, which the scrape's timeout does. A target's charge is returned
// when the scrape loop appends its report (up), after the buffer was
// returned. Every other connection (kubelets, the gateway's own, users'
// jobs) passes untouched, keep-alive included.
//
// Per scrape a target is charged the bytes read so far, never more than
// the per-scrape limit (past it Prometheus stops buffering and discards the
// rest), and at least what it may already hold before reading: Prometheus
// sizes the next buffer to the previous body, so the first bytes of a
// response wait for that much room (an eighth of the bound for a target
// not yet scraped). A response that names a Content-Encoding is charged
// the limit: it is read into memory decompressed. Scrapes that hold part
// of the room and wait for more can keep each other from finishing; one
// that ran out of time that way reserves the limit on its next scrape, so
// that it then waits holding nothing and finishes once let in.
type podBytes struct {
	limit     int64
	perScrape int64
	// initial is reserved for a target's first scrape.
	initial int64
	// maxHold returns a charge whose report never came (a target dropped
	// mid-scrape), so that no budget leaks for good.
	maxHold time.Duration
	sem     *semaphore.Weighted
	dial    dialFunc
	logger  *slog.Logger

	waits, timeouts prometheus.Counter

	mu       sync.Mutex
	targets  map[string]*podCharge // by address, as the pod job's instance label
	inFlight int64
	// unlogged counts timeouts since the last log line; lastLog limits
	// those lines to one a minute.
	unlogged int
	lastLog  time.Time
}

type dialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// podCharge is one target's charge for its current scrape.
type podCharge struct {
	held, read int64
	compressed bool
	// starved: the scrape ran out of time waiting for room while holding some.
	starved bool
	// last is reserved before the first byte of a scrape is handed on: what
	// the target's buffer may already be sized to, the charge of its last
	// successful scrape, or more.
	last    int64
	episode uint64
	timer   *time.Timer
}

func newPodBytes(limit int64, job *config.ScrapeConfig, dial dialFunc, logger *slog.Logger, reg prometheus.Registerer) (*podBytes, error) {
	g := &podBytes{
		limit:     limit,
		perScrape: limit,
		maxHold:   2 * time.Minute,
		sem:       semaphore.NewWeighted(limit),
		dial:      dial,
		logger:    logger,
		targets:   map[string]*podCharge{},
		waits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metrics_gateway_pod_scrape_bytes_waits_total",
			Help: "Reads of annotated-pod scrapes that waited for room under --pod-scrape-max-bytes-in-flight.",
		}),
		timeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "metrics_gateway_pod_scrape_bytes_timeouts_total",
			Help: "Annotated-pod scrapes that ran out of time waiting for room under --pod-scrape-max-bytes-in-flight; each failed.",
		}),
	}
	if dial == nil {
		g.dial = (&net.Dialer{}).DialContext
	}
	if job != nil {
		if b := int64(job.BodySizeLimit); b > 0 && b < limit {
			g.perScrape = b
		}
		g.maxHold = max(g.maxHold, 2*time.Duration(job.ScrapeInterval))
	}
	g.initial = min(g.perScrape, limit/8)
	inFlight := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "metrics_gateway_pod_scrape_bytes_in_flight",
		Help: "Bytes charged to annotated-pod scrapes that have not finished, at most --pod-scrape-max-bytes-in-flight.",
	}, func() float64 {
		g.mu.Lock()
		defer g.mu.Unlock()
		return float64(g.inFlight)
	})
	for _, c := range []prometheus.Collector{g.waits, g.timeouts, inFlight} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register pod scrape bytes metrics: %w", err)
		}
	}
	return g, nil
}

// dialContext is the scrape manager's dialer (config.WithDialContextFunc).
func (g *podBytes) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := g.dial(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	closed, cancel := context.WithCancel(context.Background())
	return &podConn{Conn: conn, g: g, addr: addr, closed: closed, cancel: cancel, decided: make(chan struct{})}, nil
}

// charge adds n bytes read from addr and waits until the target's charge
// is covered, or until ctx (the connection) is done.
func (g *podBytes) charge(ctx context.Context, addr string, n int64, compressed bool) error {
	g.mu.Lock()
	t := g.target(addr)
	t.read += n
	t.compressed = t.compressed || compressed
	delta := max(t.last, t.size(g.perScrape)) - t.held
	g.mu.Unlock()
	if delta <= 0 {
		return nil
	}
	if !g.sem.TryAcquire(delta) {
		g.waits.Inc()
		if err := g.sem.Acquire(ctx, delta); err != nil {
			g.mu.Lock()
			if t := g.target(addr); t.held > 0 {
				t.starved = true
			}
			g.mu.Unlock()
			g.timedOut(addr)
			return fmt.Errorf("no room for pod scrape of %s under the %d bytes in flight: %w", addr, g.limit, net.ErrClosed)
		}
	}
	g.mu.Lock()
	// The report may have come meanwhile: the bytes count for the next one.
	t = g.target(addr)
	if t.held == 0 {
		ep := t.episode
		t.timer = time.AfterFunc(g.maxHold, func() { g.expire(addr, ep) })
	}
	t.held += delta
	g.inFlight += delta
	g.mu.Unlock()
	return nil
}

// size is what the scrape read so far can hold in memory.
func (t *podCharge) size(perScrape int64) int64 {
	if t.compressed {
		return perScrape
	}
	return min(t.read, perScrape)
}

func (g *podBytes) target(addr string) *podCharge {
	t := g.targets[addr]
	if t == nil {
		t = &podCharge{last: g.initial}
		g.targets[addr] = t
	}
	return t
}

// reported returns the charge of the pod target at instance, whose scrape
// loop appended up = v: its buffer went back to Prometheus' pool before.
func (g *podBytes) reported(instance string, v float64) {
	g.mu.Lock()
	t := g.targets[instance]
	if t == nil {
		g.mu.Unlock()
		return
	}
	switch size := t.size(g.perScrape); {
	case value.IsStaleNaN(v):
		// The target is gone: forget it, so nothing grows without bound.
		delete(g.targets, instance)
	case v == 1:
		// Prometheus sized its next buffer to this body.
		t.last = size
	case t.starved:
		t.last = g.perScrape
	default:
		// A failed scrape may or may not have read a body it sizes by.
		t.last = max(t.last, size)
	}
	held := g.endScrape(t)
	g.mu.Unlock()
	if held > 0 {
		g.sem.Release(held)
	}
}

// expire returns a charge that no report returned within maxHold.
func (g *podBytes) expire(addr string, episode uint64) {
	g.mu.Lock()
	t := g.targets[addr]
	if t == nil || t.episode != episode {
		g.mu.Unlock()
		return
	}
	t.last = max(t.last, t.size(g.perScrape))
	held := g.endScrape(t)
	g.mu.Unlock()
	g.logger.Debug("Returned a pod scrape's bytes in flight that no report returned", "target", addr, "bytes", held)
	if held > 0 {
		g.sem.Release(held)
	}
}

// endScrape zeroes t's charge and returns what it held. g.mu is held.
func (g *podBytes) endScrape(t *podCharge) int64 {
	held := t.held
	g.inFlight -= held
	t.held, t.read, t.compressed, t.starved = 0, 0, false, false
	t.episode++
	if t.timer != nil {
		t.timer.Stop()
		t.timer = nil
	}
	return held
}

func (g *podBytes) timedOut(addr string) {
	g.timeouts.Inc()
	g.mu.Lock()
	g.unlogged++
	now := time.Now()
	if now.Sub(g.lastLog) < time.Minute {
		g.mu.Unlock()
		return
	}
	n := g.unlogged
	g.unlogged, g.lastLog = 0, now
	g.mu.Unlock()
	g.logger.Warn("Pod scrapes failed waiting for room under --pod-scrape-max-bytes-in-flight: other pod scrapes hold it",
		"target", addr, "maxBytesInFlight", g.limit, "failedSinceLastLog", n)
}

// podConn is a scrape connection. Its first request decides whether it
// is a pod's (plain HTTP with podScrapeHeader); a pod's charges every read.
type podConn struct {
	net.Conn
	g    *podBytes
	addr string
	// closed is done once Close was called: a wait for room ends.
	closed context.Context
	cancel context.CancelFunc
	// decided is closed once gated is set. head and written belong to
	// Write, which only the transport's writer calls.
	decided chan struct{}
	gated   bool
	head    []byte
	written bool
	enc     encodingSniffer
}

func (c *podConn) Write(p []byte) (int, error) {
	if !c.written {
		c.classify(p)
	}
	return c.Conn.Write(p)
}

// classify looks for the pod job's marker in the request's header block.
func (c *podConn) classify(p []byte) {
	head := p
	if c.head != nil {
		c.head = append(c.head, p...)
		head = c.head
	}
	switch {
	case len(head) > 0 && head[0] == tlsHandshake:
		// Kubelets. An https pod cannot be charged, but neither does it
		// deliver a body: the pod job verifies certificates, and none
		// verifies for a pod IP.
		c.decide(false)
	case bytes.Contains(head, headerEnd):
		end := bytes.Index(head, headerEnd)
		c.decide(bytes.Contains(head[:end+2], podScrapeMarker))
	case len(head) > maxRequestHead:
		c.decide(true)
	case c.head == nil:
		c.head = append([]byte{}, p...)
	}
}

func (c *podConn) decide(gated bool) {
	c.gated, c.written, c.head = gated, true, nil
	close(c.decided)
}

func (c *podConn) Read(p []byte) (int, error) {
	select {
	case <-c.decided:
		if !c.gated {
			return c.Conn.Read(p)
		}
	default:
	}
	if len(p) > podReadChunk {
		p = p[:podReadChunk]
	}
	n, err := c.Conn.Read(p)
	if n == 0 {
		return n, err
	}
	select {
	case <-c.decided:
	case <-c.closed.Done():
		return 0, net.ErrClosed
	}
	if !c.gated {
		return n, err
	}
	if cerr := c.g.charge(c.closed, c.addr, int64(n), c.enc.scan(p[:n])); cerr != nil {
		return 0, cerr
	}
	return n, err
}

func (c *podConn) Close() error {
	c.cancel()
	return c.Conn.Close()
}

// encodingSniffer finds a Content-Encoding header line in a response
// stream, in any letter case and across reads. It looks at bodies too: a
// text exposition has no such line, and a false find only charges more.
type encodingSniffer struct{ matched int }

const encodingLine = "\ncontent-encoding:"

func (s *encodingSniffer) scan(b []byte) bool {
	found := false
	for len(b) > 0 {
		if s.matched == 0 {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				return found
			}
			b, s.matched = b[i+1:], 1
			continue
		}
		c := b[0]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != encodingLine[s.matched] {
			// b[0] may start the next match: IndexByte looks at it.
			s.matched = 0
			continue
		}
		b, s.matched = b[1:], s.matched+1
		if s.matched == len(encodingLine) {
			found, s.matched = true, 0
		}
	}
	return found
}

// wrap returns app, returning each pod target's charge as its report passes.
func (g *podBytes) wrap(app storage.AppendableV2) storage.AppendableV2 {
	return podBytesAppendable{app: app, g: g}
}

type podBytesAppendable struct {
	app storage.AppendableV2
	g   *podBytes
}

func (a podBytesAppendable) AppenderV2(ctx context.Context) storage.AppenderV2 {
	return podBytesAppender{AppenderV2: a.app.AppenderV2(ctx), g: a.g}
}

type podBytesAppender struct {
	storage.AppenderV2
	g *podBytes
}

func (a podBytesAppender) Append(ref storage.SeriesRef, ls labels.Labels, st, t int64, v float64, h *histogram.Histogram, fh *histogram.FloatHistogram, opts storage.AppendV2Options) (storage.SeriesRef, error) {
	ref, err := a.AppenderV2.Append(ref, ls, st, t, v, h, fh, opts)
	if h == nil && fh == nil && ls.Get(model.MetricNameLabel) == scrapeHealthMetric && ls.Get(model.JobLabel) == PodJobName {
		a.g.reported(ls.Get(model.InstanceLabel), v)
	}
	return ref, err
}

// podBytesFor builds the bound for the pod job among scs, nil when limit
// is 0 or there is no pod job.
func podBytesFor(scs []*config.ScrapeConfig, limit int64, dial dialFunc, logger *slog.Logger, reg prometheus.Registerer) (*podBytes, error) {
	if limit < 0 {
		return nil, errors.New("scrape: negative pod bytes in flight")
	}
	if limit == 0 {
		return nil, nil
	}
	var pod *config.ScrapeConfig
	for _, sc := range scs {
		if sc.JobName == PodJobName {
			pod = sc
		} else if unixSocketJob(sc) {
			// Prometheus dials __unix_socket__ targets through a dialer of
			// its own, and the manager's dialer (ours) replaces it: those
			// scrapes would go over TCP to __address__ instead.
			return nil, fmt.Errorf("scrape job %q sets %s, which cannot be scraped while --pod-scrape-max-bytes-in-flight (%d) bounds pod scrapes: set it to 0 to scrape unix sockets", sc.JobName, promscrape.UnixSocketLabel, limit)
		}
	}
	if pod == nil {
		return nil, nil
	}
	return newPodBytes(limit, pod, dial, logger, reg)
}

// unixSocketJob tells whether sc's static targets or relabeling set
// __unix_socket__. Targets from other discovery that carry it are not seen.
func unixSocketJob(sc *config.ScrapeConfig) bool {
	for _, rc := range sc.RelabelConfigs {
		if rc.TargetLabel == promscrape.UnixSocketLabel || (rc.Action == relabel.LabelMap && strings.Contains(rc.Replacement, promscrape.UnixSocketLabel)) {
			return true
		}
	}
	for _, d := range sc.ServiceDiscoveryConfigs {
		static, ok := d.(discovery.StaticConfig)
		if !ok {
			continue
		}
		for _, g := range static {
			if _, ok := g.Labels[promscrape.UnixSocketLabel]; ok {
				return true
			}
			for _, t := range g.Targets {
				if _, ok := t[promscrape.UnixSocketLabel]; ok {
					return true
				}
			}
		}
	}
	return false
}
