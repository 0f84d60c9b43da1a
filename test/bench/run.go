package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
)

// Query is one kind of request, with its path under the server.
type Query struct {
	Name, Path string
}

// ResourceQueries are what kubectl top and the HPA ask metrics.k8s.io.
func ResourceQueries() []Query {
	sel := url.Values{"labelSelector": {"app=" + SelectorApp}}.Encode()
	return []Query{
		{"list NodeMetrics", "/apis/metrics.k8s.io/v1beta1/nodes"},
		{"list all PodMetrics", "/apis/metrics.k8s.io/v1beta1/pods"},
		{"PodMetrics ns + selector", "/apis/metrics.k8s.io/v1beta1/namespaces/" + SelectorNamespace + "/pods?" + sel},
	}
}

// CustomQuery is the HPA's Pods metric over the selector group: the per-second
// rate of the simulated pods' http_requests_total.
func CustomQuery() Query {
	sel := url.Values{"labelSelector": {"app=" + SelectorApp}}.Encode()
	return Query{"custom metric, 100-pod selector", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + SelectorNamespace + "/pods/*/http_requests?" + sel}
}

// Result is one run of one server at one scale.
type Result struct {
	Scale Scale
	Kind  Kind
	Run   int
	Usage Usage
	// Latency by query name and "direct" or "aggregator".
	Latency map[string]map[string]Latency
	// History describes what the server holds.
	History string
	// HeadSeries and SamplesPerRound are TSDB figures (gateway, Prometheus).
	HeadSeries      float64
	SamplesPerRound float64
	// Ingest marks the every-pod-annotated runs against Prometheus.
	Ingest bool
	// Custom marks the gateway's runs with the selector group annotated,
	// which measure the custom metric (and what scraping 100 pods costs).
	Custom bool
	// ScaleOut, when set, is a scale-out run (RunScaleOut): Usage is
	// replica 0's.
	ScaleOut *ScaleOut
}

// RunOptions shape one run.
type RunOptions struct {
	Tools      Tools
	Resolution time.Duration
	Rounds     int // idle rounds measured
	Requests   int // per query kind and path
	Prefill    time.Duration
	// Custom: the selector group's 100 pods are annotated; the run measures
	// the custom-metrics query instead of the resource queries (gateway only).
	Custom bool
	Ingest bool
	// APIs to register for the run (group, version).
	APIs [][2]string
	// ProfileDir, when set, receives the gateway's heap profile and a CPU
	// profile over ProfileRounds idle scrape rounds (1 when 0), taken after
	// the latency measurement; file names say which run (kubelets only,
	// custom, ingest) they are of.
	ProfileDir    string
	ProfileRounds int
}

// profilePrefix names a run's profile files: scale, server, which run
// (kubelets only, -custom or -ingest) and its number.
func (o RunOptions) profilePrefix(scale Scale, kind Kind, run int) string {
	what := ""
	switch {
	case o.Ingest:
		what = "-ingest"
	case o.Custom:
		what = "-custom"
	}
	return fmt.Sprintf("%s-%s%s-%d", scale, kind, what, run)
}

// Run starts kind, waits until it answers for the whole cluster, lets it settle,
// measures it idle, then measures latency, and stops it.
func (w *World) Run(ctx context.Context, kind Kind, run int, o RunOptions) (r Result, err error) {
	r = Result{Scale: w.Scale, Kind: kind, Run: run, Latency: map[string]map[string]Latency{}, Ingest: o.Ingest, Custom: o.Custom}
	start := time.Now()
	s, err := w.StartServer(ctx, kind, o.Tools, o.Resolution, o.Prefill)
	if err != nil {
		return r, err
	}
	defer func() {
		if stopErr := s.Stop(); stopErr != nil && err == nil {
			err = stopErr
		}
	}()
	if len(o.APIs) > 0 {
		if err := s.Register(ctx, o.APIs...); err != nil {
			return r, fmt.Errorf("%s: %w (log %s)", kind, err, s.LogPath())
		}
	}
	if err := w.waitComplete(ctx, s, o); err != nil {
		return r, err
	}
	w.progress("%s #%d serving the whole cluster after %s (pid %d)", kind, run, time.Since(start).Round(time.Second), s.PID())
	// Two more rounds, so the measured ones are steady state.
	time.Sleep(2 * o.Resolution)
	var samples0 float64
	if kind != MetricsServer {
		samples0, _ = s.Metric(ctx, "prometheus_tsdb_head_samples_appended_total")
	}
	if r.Usage, err = MeasureIdle(s.PID(), o.Rounds, o.Resolution); err != nil {
		return r, err
	}
	if kind != MetricsServer {
		samples1, _ := s.Metric(ctx, "prometheus_tsdb_head_samples_appended_total")
		r.SamplesPerRound = (samples1 - samples0) / float64(o.Rounds)
		r.HeadSeries, _ = s.Metric(ctx, "prometheus_tsdb_head_series")
		minT, _ := s.Metric(ctx, "prometheus_tsdb_head_min_time")
		maxT, _ := s.Metric(ctx, "prometheus_tsdb_head_max_time")
		r.History = (time.Duration(maxT-minT) * time.Millisecond).Round(time.Minute).String()
	} else {
		r.History = "last 2 scrapes"
	}
	w.progress("%s #%d idle: RSS %s (peak before requests %s), CPU/round %.2fs, history %s, head series %.0f", kind, run,
		mb(r.Usage.SteadyRSS), mb(r.Usage.PeakRSS), r.Usage.CPUPerRound.Seconds(), r.History, r.HeadSeries)
	var qs []Query
	switch {
	case (o.Ingest || o.Custom) && kind == Gateway:
		qs = []Query{CustomQuery()}
	case !o.Ingest:
		qs = ResourceQueries()
	}
	{
		for _, q := range qs {
			r.Latency[q.Name] = map[string]Latency{}
			for _, via := range []string{"direct", "aggregator"} {
				l, err := w.measure(ctx, s, q, via, o.Requests)
				if err != nil {
					return r, fmt.Errorf("%s %s %s: %w", kind, q.Name, via, err)
				}
				r.Latency[q.Name][via] = l
				w.progress("%s #%d %-32s %-10s p50 %6.1f ms  p99 %6.1f ms  (%d items, n=%d)", kind, run, q.Name, via,
					ms(l.P50), ms(l.P99), l.Items, l.N)
			}
		}
	}
	last, err := ReadProc(s.PID())
	if err != nil {
		return r, err
	}
	r.Usage.PeakRSS = last.HWM
	// Profiles last: symbolizing them maps more of the binary, which the
	// peak above must not count.
	if o.ProfileDir != "" && kind != Prometheus {
		if err := w.profiles(ctx, s, o, o.profilePrefix(w.Scale, kind, run)); err != nil {
			return r, err
		}
	}
	return r, nil
}

// profiles writes the idle profiles of s and, for the resource runs, CPU
// profiles of s answering each resource query back to back: requests
// answered in the same span compare two servers without the order the
// latency runs come in (the selector query right after the lists).
func (w *World) profiles(ctx context.Context, s *Server, o RunOptions, prefix string) error {
	if err := w.profile(ctx, s, o.ProfileDir, prefix, time.Duration(max(o.ProfileRounds, 1))*o.Resolution); err != nil {
		return err
	}
	if o.Ingest || o.Custom {
		return nil
	}
	for _, q := range ResourceQueries() {
		if err := w.profileQuery(ctx, s, o.ProfileDir, prefix, q, 15*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// profileQuery saves a CPU profile of s over span while one client sends q
// directly, one request after the other; the file says how many it answered.
func (w *World) profileQuery(ctx context.Context, s *Server, dir, prefix string, q Query, span time.Duration) error {
	loadCtx, stop := context.WithCancel(ctx)
	done := make(chan int)
	go func() {
		n := 0
		for loadCtx.Err() == nil {
			if code, _, err := s.Get(loadCtx, q.Path); err == nil && code == http.StatusOK {
				n++
			}
		}
		done <- n
	}()
	code, body, err := s.Get(ctx, fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(span.Seconds())))
	stop()
	n := <-done
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("query profile: HTTP %d %v: %.200s", code, err, body)
	}
	file := filepath.Join(dir, fmt.Sprintf("%s-cpu-%s-%d-requests.pb.gz", prefix, strings.ReplaceAll(q.Name, " ", "-"), n))
	if err := os.WriteFile(file, body, 0o644); err != nil {
		return err
	}
	w.progress("%s profile (%d requests) written to %s", q.Name, n, file)
	return nil
}

func (w *World) get(ctx context.Context, s *Server, via, path string) (int, []byte, error) {
	if via == "direct" {
		return s.Get(ctx, path)
	}
	b, err := w.Client.CoreV1().RESTClient().Get().RequestURI(path).SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		return http.StatusInternalServerError, b, err
	}
	return http.StatusOK, b, nil
}

// waitComplete waits until the server's answers cover every node and pod (and,
// for the custom query, all 100 pods of the group).
func (w *World) waitComplete(ctx context.Context, s *Server, o RunOptions) error {
	err := cluster.Poll(ctx, 2*time.Second, 5*time.Minute, string(s.Kind)+" serving the whole cluster", func() error {
		if s.Kind == Prometheus {
			n, err := promCount(ctx, s, `count(up == 1)`)
			if err == nil && n < float64(w.Scale.Nodes+w.Scale.Pods()) {
				err = fmt.Errorf("%v targets up of %d", n, w.Scale.Nodes+w.Scale.Pods())
			}
			return err
		}
		nodes, err := itemCount(w.get(ctx, s, "direct", ResourceQueries()[0].Path))
		if err != nil {
			return err
		}
		pods, err := itemCount(w.get(ctx, s, "direct", ResourceQueries()[1].Path))
		if err != nil {
			return err
		}
		if nodes < w.Scale.Nodes || pods < w.Scale.Pods() {
			return fmt.Errorf("%d of %d nodes, %d of %d pods", nodes, w.Scale.Nodes, pods, w.Scale.Pods())
		}
		if (o.Custom || o.Ingest) && s.Kind == Gateway {
			n, err := itemCount(w.get(ctx, s, "direct", CustomQuery().Path))
			if err == nil && n < min(GroupSize, w.Scale.Pods()) {
				err = fmt.Errorf("custom metric: %d of %d pods", n, GroupSize)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w (log %s)", err, s.LogPath())
	}
	return nil
}

func itemCount(code int, body []byte, err error) (int, error) {
	if err != nil {
		return 0, err
	}
	if code != http.StatusOK {
		return 0, fmt.Errorf("HTTP %d: %.200s", code, body)
	}
	var l struct {
		Items []json.RawMessage `json:"items"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		return 0, err
	}
	return len(l.Items), nil
}

func promCount(ctx context.Context, s *Server, expr string) (float64, error) {
	code, body, err := s.Get(ctx, "/api/v1/query?"+url.Values{"query": {expr}}.Encode())
	if err != nil || code != http.StatusOK {
		return 0, fmt.Errorf("query: %d %v", code, err)
	}
	var r struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil || len(r.Data.Result) == 0 {
		return 0, fmt.Errorf("query %s: no result", expr)
	}
	var v float64
	_, err = fmt.Sscan(fmt.Sprint(r.Data.Result[0].Value[1]), &v)
	return v, err
}

// measure sends n sequential requests, after five unmeasured ones.
func (w *World) measure(ctx context.Context, s *Server, q Query, via string, n int) (Latency, error) {
	var ds []time.Duration
	items := 0
	for i := range n + 5 {
		t := time.Now()
		code, body, err := w.get(ctx, s, via, q.Path)
		d := time.Since(t)
		if err != nil || code != http.StatusOK {
			return Latency{}, fmt.Errorf("HTTP %d: %v: %.200s", code, err, body)
		}
		if i >= 5 {
			ds = append(ds, d)
		}
		if i == n+4 {
			items, _ = itemCount(code, body, nil)
		}
	}
	return summarise(ds, items), nil
}

// residentByMapping sums smaps' Rss by mapped file ("[anon]" for none),
// largest first.
func residentByMapping(smaps []byte) []byte {
	rss := map[string]int64{}
	name := ""
	for _, line := range strings.Split(string(smaps), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 5 && strings.Contains(f[0], "-") && !strings.HasSuffix(f[0], ":"):
			name = "[anon]"
			if len(f) >= 6 {
				name = f[5]
			}
		case len(f) >= 2 && f[0] == "Rss:":
			var kb int64
			fmt.Sscan(f[1], &kb)
			rss[name] += kb
		}
	}
	names := make([]string, 0, len(rss))
	for n := range rss {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return rss[names[i]] > rss[names[j]] })
	var b bytes.Buffer
	for _, n := range names {
		if rss[n] >= 1024 {
			fmt.Fprintf(&b, "%8d %s\n", rss[n], n)
		}
	}
	return b.Bytes()
}

func mb(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/1e6) }

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// profile saves the server's heap profile and a CPU profile over span (the
// apiserver library's /debug/pprof, read as admin) into dir.
func (w *World) profile(ctx context.Context, s *Server, dir, prefix string, span time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	// CPU profiles of at most 30 s each, inside any server's request
	// timeout; go tool pprof merges the files it is given.
	files := map[string]string{"heap": "/debug/pprof/heap"}
	for i := 0; span > 0; i++ {
		part := min(span, 30*time.Second)
		span -= part
		name := "cpu"
		if i > 0 {
			name = fmt.Sprintf("cpu-%d", i+1)
		}
		files[name] = fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(part.Seconds()))
	}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		code, body, err := s.Get(ctx, files[name])
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("%s profile: HTTP %d %v: %.200s", name, code, err, body)
		}
		file := filepath.Join(dir, prefix+"-"+name+".pb.gz")
		if err := os.WriteFile(file, body, 0o644); err != nil {
			return err
		}
		w.progress("%s profile written to %s", name, file)
	}
	// Where the resident memory is: the Go runtime's own accounting (the
	// heap profile's text form ends with runtime.MemStats) and the kernel's
	// split into anonymous and file-backed (mmapped TSDB chunks) pages.
	code, body, err := s.Get(ctx, "/debug/pprof/heap?debug=1")
	if err != nil || code != http.StatusOK {
		return fmt.Errorf("heap?debug=1: HTTP %d %v", code, err)
	}
	if i := bytes.Index(body, []byte("# runtime.MemStats")); i >= 0 {
		body = body[i:]
	}
	rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", s.PID()))
	if err != nil {
		return err
	}
	smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", s.PID()))
	if err != nil {
		return err
	}
	file := filepath.Join(dir, prefix+"-memory.txt")
	out := append(append(body, "\n# /proc/PID/smaps_rollup\n"...), rollup...)
	out = append(append(out, "\n# resident KB by mapping (/proc/PID/smaps)\n"...), residentByMapping(smaps)...)
	if err := os.WriteFile(file, out, 0o644); err != nil {
		return err
	}
	w.progress("memory accounting written to %s", file)
	return nil
}
