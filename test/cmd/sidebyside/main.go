// Command sidebyside runs metrics-gateway, metrics-server v0.9.0 and Prometheus 3
// against the same simulated cluster, one process at a time in alternating runs,
// and writes the measured table to docs/benchmarks.md (see package test/bench).
//
//	cd test && go run ./cmd/sidebyside --scales 10x30,100x70,1000x30 --out ../docs/benchmarks.md
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/metrics-gateway/metrics-gateway/test/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidebyside:", err)
		os.Exit(1)
	}
}

type options struct {
	scales, ingestScales string
	dir, binDir, out     string
	gateway, benchtool   string
	runs, rounds, reqs   int
	prefill, resolution  time.Duration
	command              string
	profileDir           string
	profileRounds        int
	scaleOut             bool
	scaleOutOnly         bool
	ingestOnly           bool
}

func parseOptions(args []string) (options, error) {
	fs := flag.NewFlagSet("sidebyside", flag.ContinueOnError)
	var o options
	fs.StringVar(&o.scales, "scales", "10x30,100x70,1000x30", "NODESxPODS_PER_NODE, comma-separated, smallest first")
	fs.StringVar(&o.ingestScales, "ingest-scales", "100x70", "scales at which every pod is annotated and the gateway is compared with Prometheus")
	fs.StringVar(&o.dir, "dir", "", "state directory (default a temporary one, removed afterwards)")
	fs.StringVar(&o.binDir, "bin-dir", "bin", "control plane, simkubelet, metrics-server and prometheus")
	fs.StringVar(&o.gateway, "gateway", "../bin/metrics-gateway", "the gateway binary")
	fs.StringVar(&o.benchtool, "benchtool", "bin/benchtool", "hack/benchtool of the root module")
	fs.StringVar(&o.out, "out", "", "markdown file to write (e.g. ../docs/benchmarks.md); the table is printed either way")
	fs.IntVar(&o.runs, "runs", 1, "runs of each server per scale, alternating")
	fs.IntVar(&o.rounds, "rounds", 4, "idle scrape rounds measured per run")
	fs.IntVar(&o.reqs, "requests", 200, "requests per query kind, directly and through the aggregator")
	fs.DurationVar(&o.prefill, "prefill", time.Hour, "history written into the gateway's storage before it starts")
	fs.DurationVar(&o.resolution, "resolution", 15*time.Second, "--metric-resolution of every server")
	fs.StringVar(&o.command, "command", "make bench", "the command to print in the report")
	fs.StringVar(&o.profileDir, "profile-dir", "", "write each server's heap profile, a CPU profile over --profile-rounds rounds, CPU profiles answering each resource query back to back and its memory accounting here, per run (go tool pprof reads the profiles)")
	fs.IntVar(&o.profileRounds, "profile-rounds", 1, "idle scrape rounds the CPU profile spans (more rounds, more samples for the small scales)")
	fs.BoolVar(&o.scaleOut, "scale-out", true, "at the ingest scales, also run the scale-out mode (two gateway replicas, Thanos from bin-dir) on the same annotated pods")
	fs.BoolVar(&o.scaleOutOnly, "scale-out-only", false, "at the ingest scales, run only the scale-out mode (skip metrics-server, the single-process gateway and Prometheus)")
	fs.BoolVar(&o.ingestOnly, "ingest-only", false, "at the ingest scales, run only Prometheus and the gateway with every pod annotated (skip metrics-server, the custom metric and the scale-out mode)")
	return o, fs.Parse(args)
}

// resolveTools returns the absolute paths of the servers and tools o
// names, and of its bin directory, checking that each exists.
func resolveTools(o options) (bench.Tools, string, error) {
	tools := bench.Tools{}
	for _, t := range []struct {
		dst  *string
		path string
	}{{&tools.MetricsServer, filepath.Join(o.binDir, "metrics-server")}, {&tools.Prometheus, filepath.Join(o.binDir, "prometheus")},
		{&tools.Gateway, o.gateway}, {&tools.BenchTool, o.benchtool}} {
		abs, err := filepath.Abs(t.path)
		if err != nil {
			return tools, "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return tools, "", fmt.Errorf("%s missing (make bench builds it): %w", abs, err)
		}
		*t.dst = abs
	}
	binDir, err := filepath.Abs(o.binDir)
	return tools, binDir, err
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	o, err := parseOptions(args)
	if err != nil {
		return err
	}
	tools, binDir, err := resolveTools(o)
	if err != nil {
		return err
	}
	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "metrics-gateway-bench-"); err != nil {
			return err
		}
		defer os.RemoveAll(o.dir)
	}
	ingest := map[string]bool{}
	for _, s := range strings.Split(o.ingestScales, ",") {
		if s != "" {
			sc, err := bench.ParseScale(s)
			if err != nil {
				return err
			}
			ingest[sc.String()] = true
		}
	}
	begin := time.Now()
	var results []bench.Result
	var failures []string
	for _, v := range strings.Split(o.scales, ",") {
		sc, err := bench.ParseScale(v)
		if err != nil {
			return err
		}
		rs, err := runScale(ctx, o, tools, binDir, sc, ingest[sc.String()], stdout)
		results = append(results, rs...)
		if err != nil {
			fmt.Fprintf(stdout, "scale %s: %v\n", sc, err)
			failures = append(failures, fmt.Sprintf("%s: %v", sc, err))
			if ctx.Err() != nil {
				break
			}
		}
	}
	var table bytes.Buffer
	bench.Report(&table, results)
	for _, f := range failures {
		fmt.Fprintf(&table, "\n**Not measured:** %s\n", firstLine(f))
	}
	fmt.Fprintf(stdout, "\n%s\nwhole run: %s\n", table.String(), bench.Elapsed(time.Since(begin)))
	if o.out != "" {
		if err := writeDoc(o, table.String(), time.Since(begin)); err != nil {
			return err
		}
	}
	if len(failures) > 0 {
		return errors.New(strings.Join(failures, "; "))
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// The API group versions the runs ask for: the HPA controller's
// metrics.k8s.io and the newest custom.metrics.k8s.io.
var (
	metricsAPI = [2]string{"metrics.k8s.io", "v1beta1"}
	customAPI  = [2]string{"custom.metrics.k8s.io", "v1beta2"}
)

// runScale brings up one cluster and runs the servers on it in turn.
func runScale(ctx context.Context, o options, tools bench.Tools, binDir string, sc bench.Scale, ingest bool, stdout io.Writer) (rs []bench.Result, err error) {
	w, err := bench.Up(ctx, filepath.Join(o.dir, strings.ReplaceAll(sc.String(), "×", "x")), binDir, sc, stdout)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, w.Down()) }()
	ro := bench.RunOptions{Tools: tools, Resolution: o.resolution, Rounds: o.rounds, Requests: o.reqs, ProfileDir: o.profileDir, ProfileRounds: o.profileRounds}
	if o.scaleOutOnly {
		if !ingest {
			return nil, nil
		}
		return runScaleOut(ctx, o, w, ro, sc, true, stdout)
	}
	if o.ingestOnly {
		if !ingest {
			return nil, nil
		}
		return runIngest(ctx, o, w, ro, sc, stdout)
	}
	// metrics-server's work: kubelets only, no pod annotated.
	for i := range o.runs {
		for _, kind := range []bench.Kind{bench.MetricsServer, bench.Gateway} {
			ro := ro
			ro.APIs = [][2]string{metricsAPI}
			if kind == bench.Gateway {
				ro.Prefill = o.prefill
			}
			r, err := w.Run(ctx, kind, i+1, ro)
			if err != nil {
				return rs, err
			}
			rs = append(rs, r)
		}
	}
	// The custom metric: the gateway also scrapes the selector group's pods.
	if err := w.AnnotateGroup(ctx); err != nil {
		return rs, err
	}
	for i := range o.runs {
		ro := ro
		ro.APIs, ro.Prefill, ro.Custom = [][2]string{metricsAPI, customAPI}, o.prefill, true
		r, err := w.Run(ctx, bench.Gateway, i+1, ro)
		if err != nil {
			return rs, err
		}
		rs = append(rs, r)
	}
	if !ingest {
		return rs, nil
	}
	ing, err := runIngest(ctx, o, w, ro, sc, stdout)
	rs = append(rs, ing...)
	if err != nil {
		return rs, err
	}
	if !o.scaleOut {
		return rs, nil
	}
	// Every pod is annotated already.
	so, err := runScaleOut(ctx, o, w, ro, sc, false, stdout)
	return append(rs, so...), err
}

// runIngest annotates every pod and measures Prometheus and the gateway
// scraping them all, o.runs times each, alternating.
func runIngest(ctx context.Context, o options, w *bench.World, ro bench.RunOptions, sc bench.Scale, stdout io.Writer) ([]bench.Result, error) {
	start := time.Now()
	if err := w.AnnotateAll(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(stdout, "annotated all %d pods in %s\n", sc.Pods(), bench.Elapsed(time.Since(start)))
	var rs []bench.Result
	for i := range o.runs {
		for _, kind := range []bench.Kind{bench.Prometheus, bench.Gateway} {
			ro := ro
			ro.Ingest, ro.Custom = true, false
			if kind == bench.Gateway {
				ro.APIs = [][2]string{metricsAPI, customAPI}
			}
			r, err := w.Run(ctx, kind, i+1, ro)
			if err != nil {
				return rs, err
			}
			rs = append(rs, r)
		}
	}
	return rs, nil
}

// runScaleOut measures the scale-out mode o.runs times, annotating every
// pod first when annotate is set.
func runScaleOut(ctx context.Context, o options, w *bench.World, ro bench.RunOptions, sc bench.Scale, annotate bool, stdout io.Writer) ([]bench.Result, error) {
	if annotate {
		start := time.Now()
		if err := w.AnnotateAll(ctx); err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "annotated all %d pods in %s\n", sc.Pods(), bench.Elapsed(time.Since(start)))
	}
	var rs []bench.Result
	for i := range o.runs {
		r, err := w.RunScaleOut(ctx, i+1, ro)
		if err != nil {
			return rs, err
		}
		rs = append(rs, r)
	}
	return rs, nil
}

func machine() string {
	var b strings.Builder
	out, _ := exec.Command("nproc").Output()
	fmt.Fprintf(&b, "- CPUs: %s", strings.TrimSpace(string(out)))
	if l, err := exec.Command("lscpu").Output(); err == nil {
		for _, line := range strings.Split(string(l), "\n") {
			if v, ok := strings.CutPrefix(line, "Model name:"); ok {
				fmt.Fprintf(&b, " × %s", strings.TrimSpace(v))
			}
		}
	}
	b.WriteString("\n")
	if m, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(m), "\n")
		fmt.Fprintf(&b, "- Memory: %s\n", strings.Join(strings.Fields(line)[1:], " "))
	}
	if k, err := exec.Command("uname", "-sr").Output(); err == nil {
		fmt.Fprintf(&b, "- Kernel: %s\n", strings.TrimSpace(string(k)))
	}
	if g, err := exec.Command("go", "env", "GOVERSION").Output(); err == nil {
		fmt.Fprintf(&b, "- Go: %s\n", strings.TrimSpace(string(g)))
	}
	return b.String()
}

// writeDoc replaces the generated part of the document (between the markers)
// and keeps the hand-written analysis around it.
func writeDoc(o options, table string, took time.Duration) error {
	const begin, end = "<!-- BEGIN GENERATED (make bench) -->", "<!-- END GENERATED -->"
	gen := fmt.Sprintf("%s\nMeasured %s with `%s` (the whole run took %s).\n\n%s%s\n%s",
		begin, time.Now().UTC().Format("2006-01-02 15:04 UTC"), o.command, bench.Elapsed(took), machine(), table, end)
	old, err := os.ReadFile(o.out)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(old)
	i, j := strings.Index(doc, begin), strings.Index(doc, end)
	if i >= 0 && j > i {
		doc = doc[:i] + gen + doc[j+len(end):]
	} else {
		doc = "# Benchmarks\n\n" + gen + "\n" + doc
	}
	return os.WriteFile(o.out, []byte(doc), 0o644)
}
