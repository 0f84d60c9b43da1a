package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Report renders the results as markdown: per scale, gateway against
// metrics-server (medians over runs), then the ingestion comparison.
func Report(out io.Writer, results []Result) {
	byScale := map[Scale][]Result{}
	var scales []Scale
	for _, r := range results {
		if _, ok := byScale[r.Scale]; !ok {
			scales = append(scales, r.Scale)
		}
		byScale[r.Scale] = append(byScale[r.Scale], r)
	}
	sort.Slice(scales, func(i, j int) bool { return scales[i].Pods() < scales[j].Pods() })
	for _, sc := range scales {
		rs := byScale[sc]
		ms, gw, custom := pick(rs, MetricsServer, false, false), pick(rs, Gateway, false, false), pick(rs, Gateway, false, true)
		if len(ms) > 0 && len(gw) > 0 {
			fmt.Fprintf(out, "\n### %s: metrics-gateway vs metrics-server (%d nodes, %d pods)\n\n", sc, sc.Nodes, sc.Pods())
			resourceTable(out, ms, gw)
		}
		if len(custom) > 0 {
			fmt.Fprintf(out, "\n### %s: metrics-gateway serving a custom metric (the %d pods of one group annotated)\n\n", sc, GroupSize)
			customTable(out, gw, custom)
		}
		pg, pp := pick(rs, Gateway, true, false), pick(rs, Prometheus, true, false)
		if len(pg) > 0 && len(pp) > 0 {
			fmt.Fprintf(out, "\n### %s, every pod annotated: metrics-gateway vs Prometheus (%d scrape targets)\n\n", sc, sc.Nodes+sc.Pods())
			ingestTable(out, pp, pg)
		}
		if so := pickScaleOut(rs); len(so) > 0 {
			fmt.Fprintf(out, "\n### %s, every pod annotated, scale-out: two gateway replicas (--shards 2) and Thanos (%d pod targets)\n\n", sc, sc.Pods())
			scaleOutTable(out, so, pg)
		}
	}
	targetsTable(out, scales, byScale)
}

// goal is one acceptance ratio: the gateway's figure over the other
// side's, at most max.
type goal struct {
	name  string
	other Kind
	max   float64
	// ingest picks the every-pod-annotated runs.
	ingest bool
	f      func(Result) float64
}

func goals() []goal {
	rss := func(r Result) float64 { return float64(r.Usage.SteadyRSS) }
	peak := func(r Result) float64 { return float64(r.Usage.PeakRSS) }
	cpu := func(r Result) float64 { return r.Usage.CPUPerRound.Seconds() }
	lat := func(q, via string, p99 bool) func(Result) float64 {
		return func(r Result) float64 {
			l := r.Latency[q][via]
			if p99 {
				return ms(l.P99)
			}
			return ms(l.P50)
		}
	}
	qs := ResourceQueries()
	node, all, sel := qs[0].Name, qs[1].Name, qs[2].Name
	return []goal{
		{"steady RSS", MetricsServer, 1, false, rss},
		{"peak RSS", MetricsServer, 1, false, peak},
		{"CPU per round", MetricsServer, 1, false, cpu},
		{"list all PodMetrics p50, direct", MetricsServer, 1, false, lat(all, "direct", false)},
		{"list all PodMetrics p99, direct", MetricsServer, 1, false, lat(all, "direct", true)},
		{"list all PodMetrics p50, aggregator", MetricsServer, 1, false, lat(all, "aggregator", false)},
		{"list all PodMetrics p99, aggregator", MetricsServer, 1, false, lat(all, "aggregator", true)},
		{"list NodeMetrics p50, direct", MetricsServer, 1, false, lat(node, "direct", false)},
		{"list NodeMetrics p50, aggregator", MetricsServer, 1, false, lat(node, "aggregator", false)},
		{"PodMetrics ns + selector p50, direct", MetricsServer, 1, false, lat(sel, "direct", false)},
		{"PodMetrics ns + selector p50, aggregator", MetricsServer, 1, false, lat(sel, "aggregator", false)},
		{"steady RSS, every pod annotated", Prometheus, 0.5, true, rss},
		{"CPU per round, every pod annotated", Prometheus, 0.5, true, cpu},
	}
}

// targetsTable lists each acceptance ratio per scale (medians over runs),
// marked met or missed.
func targetsTable(out io.Writer, scales []Scale, byScale map[Scale][]Result) {
	gs := goals()
	cells := make([][]string, len(gs))
	found := false
	for i, g := range gs {
		for _, sc := range scales {
			other, gw := pick(byScale[sc], g.other, g.ingest, false), pick(byScale[sc], Gateway, g.ingest, false)
			a, b := 0.0, 0.0
			if len(other) > 0 && len(gw) > 0 {
				a, b = median(other, g.f), median(gw, g.f)
			}
			if a <= 0 || b <= 0 {
				cells[i] = append(cells[i], "")
				continue
			}
			found = true
			verdict := "met"
			if b/a > g.max {
				verdict = "**missed**"
			}
			cells[i] = append(cells[i], fmt.Sprintf("%.2f %s", b/a, verdict))
		}
	}
	if !found {
		return
	}
	fmt.Fprintf(out, "\n### Against the targets (gateway / other, medians)\n\n| ratio | goal |")
	for _, sc := range scales {
		fmt.Fprintf(out, " %s |", sc)
	}
	fmt.Fprintf(out, "\n|---|---:|%s\n", strings.Repeat("---:|", len(scales)))
	for i, g := range gs {
		if strings.Join(cells[i], "") == "" {
			continue
		}
		vs := "metrics-server"
		if g.other == Prometheus {
			vs = "Prometheus 3"
		}
		fmt.Fprintf(out, "| %s | ≤ %.1f× %s | %s |\n", g.name, g.max, vs, strings.Join(cells[i], " | "))
	}
}

func pick(rs []Result, k Kind, ingest, custom bool) []Result {
	var out []Result
	for _, r := range rs {
		if r.Kind == k && r.Ingest == ingest && r.Custom == custom && r.ScaleOut == nil {
			out = append(out, r)
		}
	}
	return out
}

func median(rs []Result, f func(Result) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return Percentile(xs, 50)
}

func row(out io.Writer, name string, a, b float64, format string, lowerBetter bool) {
	ratio := "–"
	if a > 0 {
		ratio = fmt.Sprintf("%.2f", b/a)
	}
	fmt.Fprintf(out, "| %s | "+format+" | "+format+" | %s |\n", name, a, b, ratio)
}

func resourceTable(out io.Writer, msr, gw []Result) {
	fmt.Fprintf(out, "| measure | metrics-server | metrics-gateway | gateway / metrics-server |\n|---|---:|---:|---:|\n")
	row(out, "steady RSS (MB)", median(msr, func(r Result) float64 { return float64(r.Usage.SteadyRSS) / 1e6 }),
		median(gw, func(r Result) float64 { return float64(r.Usage.SteadyRSS) / 1e6 }), "%.0f", true)
	row(out, "peak RSS (MB)", median(msr, func(r Result) float64 { return float64(r.Usage.PeakRSS) / 1e6 }),
		median(gw, func(r Result) float64 { return float64(r.Usage.PeakRSS) / 1e6 }), "%.0f", true)
	row(out, "CPU per 15 s round (s)", median(msr, func(r Result) float64 { return r.Usage.CPUPerRound.Seconds() }),
		median(gw, func(r Result) float64 { return r.Usage.CPUPerRound.Seconds() }), "%.3f", true)
	for _, q := range ResourceQueries() {
		for _, via := range []string{"direct", "aggregator"} {
			for _, p := range []string{"p50", "p99"} {
				get := func(r Result) float64 {
					l, ok := r.Latency[q.Name][via]
					if !ok {
						return 0
					}
					if p == "p50" {
						return ms(l.P50)
					}
					return ms(l.P99)
				}
				a, b := median(msr, get), median(gw, get)
				if a == 0 && b == 0 {
					continue
				}
				items := gw[0].Latency[q.Name][via].Items
				name := fmt.Sprintf("%s (%d items), %s, %s (ms)", q.Name, items, via, p)
				if a == 0 {
					fmt.Fprintf(out, "| %s | – | %.1f | – |\n", name, b)
					continue
				}
				row(out, name, a, b, "%.1f", true)
			}
		}
	}
	fmt.Fprintf(out, "| history held | %s | %s | |\n", msr[0].History, gw[0].History)
	fmt.Fprintf(out, "| runs (alternating), requests per latency figure | %d | %d | n=%d |\n", len(msr), len(gw), gw[0].Latency[ResourceQueries()[0].Name]["direct"].N)
}

// customTable is the gateway with the selector group annotated, beside the
// gateway without: what scraping 100 more targets costs, and the custom
// metric's latency.
func customTable(out io.Writer, gw, custom []Result) {
	fmt.Fprintf(out, "| measure | metrics-gateway, kubelets only | metrics-gateway + %d pod targets | ratio |\n|---|---:|---:|---:|\n", GroupSize)
	row(out, "steady RSS (MB)", median(gw, func(r Result) float64 { return float64(r.Usage.SteadyRSS) / 1e6 }),
		median(custom, func(r Result) float64 { return float64(r.Usage.SteadyRSS) / 1e6 }), "%.0f", true)
	row(out, "CPU per 15 s round (s)", median(gw, func(r Result) float64 { return r.Usage.CPUPerRound.Seconds() }),
		median(custom, func(r Result) float64 { return r.Usage.CPUPerRound.Seconds() }), "%.3f", true)
	q := CustomQuery()
	for _, via := range []string{"direct", "aggregator"} {
		l := custom[0].Latency[q.Name][via]
		p50 := median(custom, func(r Result) float64 { return ms(r.Latency[q.Name][via].P50) })
		p99 := median(custom, func(r Result) float64 { return ms(r.Latency[q.Name][via].P99) })
		fmt.Fprintf(out, "| %s (%d items), %s, p50 / p99 (ms) | – | %.1f / %.1f | |\n", q.Name, l.Items, via, p50, p99)
	}
}

func ingestTable(out io.Writer, prom, gw []Result) {
	fmt.Fprintf(out, "| measure | Prometheus 3 | metrics-gateway | gateway / Prometheus |\n|---|---:|---:|---:|\n")
	row(out, "steady RSS (MB)", median(prom, func(r Result) float64 { return float64(r.Usage.SteadyRSS) / 1e6 }),
		median(gw, func(r Result) float64 { return float64(r.Usage.SteadyRSS) / 1e6 }), "%.0f", true)
	row(out, "peak RSS (MB)", median(prom, func(r Result) float64 { return float64(r.Usage.PeakRSS) / 1e6 }),
		median(gw, func(r Result) float64 { return float64(r.Usage.PeakRSS) / 1e6 }), "%.0f", true)
	row(out, "CPU per 15 s round (s)", median(prom, func(r Result) float64 { return r.Usage.CPUPerRound.Seconds() }),
		median(gw, func(r Result) float64 { return r.Usage.CPUPerRound.Seconds() }), "%.3f", true)
	row(out, "head series", median(prom, func(r Result) float64 { return r.HeadSeries }),
		median(gw, func(r Result) float64 { return r.HeadSeries }), "%.0f", true)
	row(out, "samples appended per round", median(prom, func(r Result) float64 { return r.SamplesPerRound }),
		median(gw, func(r Result) float64 { return r.SamplesPerRound }), "%.0f", true)
	fmt.Fprintf(out, "| history held (both started empty) | %s | %s | |\n", prom[0].History, gw[0].History)
}

func pickScaleOut(rs []Result) []Result {
	var out []Result
	for _, r := range rs {
		if r.ScaleOut != nil {
			out = append(out, r)
		}
	}
	return out
}

// scaleOutTable: each replica's share of the targets and its cost, beside
// the single-process gateway scraping them all in the same world (when it
// ran), the custom metric through the engine, and the engine's processes.
func scaleOutTable(out io.Writer, so, single []Result) {
	fmt.Fprintf(out, "| measure | replica 0 | replica 1 | single-process gateway, every target |\n|---|---:|---:|---:|\n")
	one := func(rs []Result, f func(Result) float64, format string) string {
		if len(rs) == 0 {
			return "–"
		}
		return fmt.Sprintf(format, median(rs, f))
	}
	rep := func(i int, f func(Usage) float64) func(Result) float64 {
		return func(r Result) float64 { return f(r.ScaleOut.Replicas[i]) }
	}
	for _, m := range []struct {
		name, format string
		f            func(Usage) float64
	}{
		{"steady RSS (MB)", "%.0f", func(u Usage) float64 { return float64(u.SteadyRSS) / 1e6 }},
		{"peak RSS (MB)", "%.0f", func(u Usage) float64 { return float64(u.PeakRSS) / 1e6 }},
		{"CPU per 15 s round (s)", "%.3f", func(u Usage) float64 { return u.CPUPerRound.Seconds() }},
	} {
		fmt.Fprintf(out, "| %s | %s | %s | %s |\n", m.name, one(so, rep(0, m.f), m.format), one(so, rep(1, m.f), m.format),
			one(single, func(r Result) float64 { return m.f(r.Usage) }, m.format))
	}
	fmt.Fprintf(out, "| pod targets scraped | %s | %s | %s |\n",
		one(so, func(r Result) float64 { return float64(r.ScaleOut.Targets[0]) }, "%.0f"),
		one(so, func(r Result) float64 { return float64(r.ScaleOut.Targets[1]) }, "%.0f"),
		one(single, func(r Result) float64 { return float64(r.Scale.Pods()) }, "%.0f"))
	q := CustomQuery()
	for _, via := range []string{"direct", "aggregator"} {
		lat := func(rs []Result) string {
			if len(rs) == 0 || rs[0].Latency[q.Name] == nil {
				return "–"
			}
			return fmt.Sprintf("%.1f / %.1f", median(rs, func(r Result) float64 { return ms(r.Latency[q.Name][via].P50) }),
				median(rs, func(r Result) float64 { return ms(r.Latency[q.Name][via].P99) }))
		}
		fmt.Fprintf(out, "| %s, %s, p50 / p99 (ms) | %s (through the engine) | | %s (embedded engine) |\n", q.Name, via, lat(so), lat(single))
	}
	names := make([]string, 0, len(so[0].ScaleOut.Engine))
	for n := range so[0].ScaleOut.Engine {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintf(out, "\n| engine process | steady RSS (MB) | CPU per 15 s round (s) |\n|---|---:|---:|\n")
	for _, n := range names {
		fmt.Fprintf(out, "| %s | %s | %s |\n", n,
			one(so, func(r Result) float64 { return float64(r.ScaleOut.Engine[n].SteadyRSS) / 1e6 }, "%.0f"),
			one(so, func(r Result) float64 { return r.ScaleOut.Engine[n].CPUPerRound.Seconds() }, "%.3f"))
	}
}

// Elapsed formats a duration for the report.
func Elapsed(d time.Duration) string { return strings.TrimSpace(d.Round(time.Second).String()) }
