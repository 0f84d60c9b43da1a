package main

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

const readmeHead = `# kubelet /metrics/resource fixtures

Generated: do not edit. These are the bodies a %s kubelet serves on ` + "`/metrics/resource`" + `,
produced by the kubelet's own collector (` + "`collectors.NewResourceMetricsCollector`" + ` from
k8s.io/kubernetes %s, registered in a component-base ` + "`KubeRegistry`" + ` and served by
` + "`metrics.HandlerFor`" + ` as the kubelet does) over a hand-written summary provider. Regenerate with

    cd test && go run ./cmd/kubelet-fixtures -out ../pkg/scrape/testdata/kubelet

and ` + "`cd test && go test -count=1 ./cmd/kubelet-fixtures`" + ` fails when these files are stale
(` + "`-count=1`" + `: the test cache does not see edits here, outside the test module).
Built with client_golang %s, prometheus/common %s.

- t0 = %d (%s). ` + "`round1.txt`" + ` is the scrape at t0, ` + "`round2.txt`" + ` at t0+%s.
- Every CPU, memory and swap sample carries its round's time as an explicit timestamp:
  %d ms in round 1, %d ms in round 2.
- Values are in Go's shortest float form: 104857600 bytes reads ` + "`1.048576e+08`" + `, a start
  time ` + "`1.7899136e+09`" + ` (Unix seconds, no timestamp). HELP texts begin with the stability
  level (` + "`[STABLE]`, `[ALPHA]`" + `).
- Bodies only, uncompressed (the requests carry no Accept-Encoding; a kubelet gzips for
  Prometheus, which sends ` + "`Accept-Encoding: gzip`" + `).

## Content negotiation (round 1)

| request | Accept | Content-Type served | body as text/plain |
|---|---|---|---|
`

const readmeRates = `
CPU is cumulative core-seconds (` + "`container_cpu_usage_seconds_total`" + ` etc.), memory is
working-set bytes. "rate" is (round2 − round1) / 15 s in cores, what ` + "`irate()`" + ` over both
samples returns. Where the container's start time changed (default/restart-1 app), the counter
was reset: ` + "`irate`/`rate`" + ` count the whole round-2 value as increase (0.3 / 15 s = 0.02), while
metrics-server's rule (start time moved or value fell) skips the container for that window.
The pod cgroup survives the restart, so the pod counter does not reset.

default/nodata-1 exists only in round 2. Its container "starting" has CPU and memory structs
with nil usage, so the collector sends no CPU, memory or swap series for it, only
` + "`container_start_time_seconds`" + `.
`

func renderReadme(rounds []round, bodies [][]byte, ns []negotiation, deps map[string]string) ([]byte, error) {
	if len(rounds) != 2 {
		return nil, fmt.Errorf("README describes two rounds, have %d", len(rounds))
	}
	var b bytes.Buffer
	r1, r2 := rounds[0], rounds[1]
	fmt.Fprintf(&b, readmeHead, deps["k8s.io/kubernetes"], deps["k8s.io/kubernetes"],
		deps["github.com/prometheus/client_golang"], deps["github.com/prometheus/common"],
		r1.time.Unix(), r1.time.Format(time.RFC3339), r2.time.Sub(r1.time),
		r1.time.UnixMilli(), r2.time.UnixMilli())
	for _, n := range ns {
		accept := "(none)"
		if n.accept != "" {
			accept = "`" + n.accept + "`"
		}
		same := "no"
		if n.sameBody {
			same = "identical"
		}
		fmt.Fprintf(&b, "| %s | %s | `%s` | %s |\n", n.name, accept, n.contentType, same)
	}

	b.WriteString("\n## Families (round 2)\n\n| family | type | labels | timestamp |\n|---|---|---|---|\n")
	if err := writeFamilies(&b, bodies[1]); err != nil {
		return nil, err
	}

	b.WriteString("\n## Expected values\n")
	b.WriteString(readmeRates)
	b.WriteString("\n| scope | namespace/pod | container | start r1 | start r2 | cpu r1 (s) | cpu r2 (s) | rate (cores) | memory r1 | memory r2 |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| node | %s | | | | %s | %s | %s | %d | %d |\n", nodeName,
		cpuCell(&r1.node), cpuCell(&r2.node), rateCell(&r1.node, &r2.node, true, r2.time.Sub(r1.time)),
		r1.node.memBytes, r2.node.memBytes)
	for _, row := range tableRows(r1, r2) {
		b.WriteString(row)
	}
	return b.Bytes(), nil
}

// writeFamilies lists what the collector actually emitted, parsed back from the body,
// so the table cannot drift from the files.
func writeFamilies(b *bytes.Buffer, body []byte) error {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("parse round 2: %w", err)
	}
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		f := fams[n]
		var labels []string
		stamped := "none"
		for i, m := range f.GetMetric() {
			if i == 0 {
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName())
				}
			}
			if m.TimestampMs != nil {
				stamped = "explicit"
			}
		}
		fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", n, strings.ToLower(f.GetType().String()),
			strings.Join(labels, ", "), stamped)
	}
	return nil
}

func tableRows(r1, r2 round) []string {
	interval := r2.time.Sub(r1.time)
	var order []key
	seen := map[key]bool{}
	c1, c2 := map[key]containerSample{}, map[key]containerSample{}
	p1, p2 := map[key]podSample{}, map[key]podSample{}
	collect := func(r round, cs map[key]containerSample, ps map[key]podSample) {
		for _, p := range r.pods {
			pk := key{p.namespace, p.name, ""}
			ps[pk] = p
			for _, k := range append([]key{pk}, containerKeys(p)...) {
				if !seen[k] {
					seen[k] = true
					order = append(order, k)
				}
			}
			for _, c := range p.containers {
				cs[key{p.namespace, p.name, c.name}] = c
			}
		}
	}
	collect(r1, c1, p1)
	collect(r2, c2, p2)

	var rows []string
	for _, k := range order {
		var s1, s2 string
		var u1, u2 *usage
		scope := "container"
		sameStart := true
		if k.container == "" {
			scope = "pod"
			if p, ok := p1[k]; ok {
				u1 = &p.use
			}
			if p, ok := p2[k]; ok {
				u2 = &p.use
			}
		} else {
			a, ok1 := c1[k]
			z, ok2 := c2[k]
			if ok1 {
				s1, u1 = startCell(a.start), a.use
			}
			if ok2 {
				s2, u2 = startCell(z.start), z.use
			}
			sameStart = ok1 && ok2 && a.start.Equal(z.start)
		}
		rows = append(rows, fmt.Sprintf("| %s | %s/%s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
			scope, k.ns, k.pod, k.container, s1, s2, cpuCell(u1), cpuCell(u2),
			rateCell(u1, u2, sameStart, interval), memCell(u1), memCell(u2)))
	}
	return rows
}

// key names one table row; container is empty for the pod's own row.
type key struct{ ns, pod, container string }

func containerKeys(p podSample) []key {
	var ks []key
	for _, c := range p.containers {
		ks = append(ks, key{p.namespace, p.name, c.name})
	}
	return ks
}

func startCell(t time.Time) string { return strconv.FormatInt(t.Unix(), 10) }

func cpuCell(u *usage) string {
	if u == nil {
		return "—"
	}
	return strconv.FormatFloat(float64(u.cpuNanos)/1e9, 'f', -1, 64)
}

func memCell(u *usage) string {
	if u == nil {
		return "—"
	}
	return strconv.FormatUint(u.memBytes, 10)
}

// rateCell is the two-sample rate; a counter that restarted counts from zero, as
// Prometheus' reset handling does.
func rateCell(u1, u2 *usage, sameStart bool, interval time.Duration) string {
	if u1 == nil || u2 == nil {
		return "—"
	}
	inc := float64(u2.cpuNanos) - float64(u1.cpuNanos)
	note := ""
	if !sameStart || u2.cpuNanos < u1.cpuNanos {
		inc, note = float64(u2.cpuNanos), " (reset)"
	}
	return strconv.FormatFloat(inc/float64(interval.Nanoseconds()), 'f', -1, 64) + note
}
