package bench

import (
	"strings"
	"testing"
	"time"
)

func TestResidentByMapping(t *testing.T) {
	smaps := `00400000-00500000 r-xp 00000000 fd:00 12 /bin/gw
Size:               1024 kB
Rss:                2048 kB
00600000-00700000 r--p 00100000 fd:00 12 /bin/gw
Rss:                1024 kB
00800000-00900000 rw-p 00000000 00:00 0 
Rss:                4096 kB
VmFlags: rd wr mr mw me ac
7f0000000000-7f0000100000 rw-p 00000000 00:00 0 
Rss:                 512 kB
`
	got := string(residentByMapping([]byte(smaps)))
	want := "    4608 [anon]\n    3072 /bin/gw\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(got, "VmFlags") {
		t.Error("a field line was taken for a mapping")
	}
}

func TestTargetsTable(t *testing.T) {
	sc := Scale{Nodes: 10, PodsPerNode: 30}
	lat := func(p50 time.Duration) map[string]map[string]Latency {
		m := map[string]map[string]Latency{}
		for _, q := range ResourceQueries() {
			m[q.Name] = map[string]Latency{"direct": {P50: p50, P99: 2 * p50, Items: 1, N: 1}, "aggregator": {P50: p50, P99: 2 * p50, Items: 1, N: 1}}
		}
		return m
	}
	rs := []Result{
		{Scale: sc, Kind: MetricsServer, Usage: Usage{SteadyRSS: 100e6, PeakRSS: 100e6, CPUPerRound: time.Second}, Latency: lat(10 * time.Millisecond)},
		{Scale: sc, Kind: Gateway, Usage: Usage{SteadyRSS: 150e6, PeakRSS: 90e6, CPUPerRound: time.Second}, Latency: lat(5 * time.Millisecond)},
		{Scale: sc, Kind: Prometheus, Ingest: true, Usage: Usage{SteadyRSS: 1000e6, CPUPerRound: 4 * time.Second}},
		{Scale: sc, Kind: Gateway, Ingest: true, Usage: Usage{SteadyRSS: 400e6, CPUPerRound: 3 * time.Second}},
	}
	var b strings.Builder
	Report(&b, rs)
	out := b.String()
	for _, want := range []string{
		"| steady RSS | ≤ 1.0× metrics-server | 1.50 **missed** |",
		"| peak RSS | ≤ 1.0× metrics-server | 0.90 met |",
		"| CPU per round | ≤ 1.0× metrics-server | 1.00 met |",
		"| list all PodMetrics p99, aggregator | ≤ 1.0× metrics-server | 0.50 met |",
		"| steady RSS, every pod annotated | ≤ 0.5× Prometheus 3 | 0.40 met |",
		"| CPU per round, every pod annotated | ≤ 0.5× Prometheus 3 | 0.75 **missed** |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
