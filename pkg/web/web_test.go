package web

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/promql"
)

func TestRenderChart(t *testing.T) {
	start := time.Unix(1_790_000_000, 0)
	end := start.Add(10 * time.Minute)
	// Points every step (the range over 240), as a range query returns.
	run := func(from, to time.Duration, v float64) []promql.FPoint {
		var out []promql.FPoint
		for d := from; d <= to; d += 2500 * time.Millisecond {
			out = append(out, promql.FPoint{T: start.Add(d).UnixMilli(), F: v})
		}
		return out
	}
	current := append(run(0, 2*time.Minute, 2), run(8*time.Minute, 9*time.Minute, 3)...)
	c := renderChart("chart-x", `a "title" <b>`, []line{
		{Label: "current", Points: current},
		{Label: "<target>", Points: run(5*time.Minute, 5*time.Minute, 10), Dashed: true},
	}, start, end)
	svg := string(c.SVG)
	for _, want := range []string{
		`id="chart-x"`, `aria-label="a &#34;title&#34; &lt;b&gt;"`,
		// a gap of six minutes (more than a hundredth of the range) breaks the line in two
		`data-series="current"`, `<circle`,
	} {
		if !strings.Contains(svg, want) {
			t.Errorf("chart lacks %s:\n%s", want, svg)
		}
	}
	if n := strings.Count(svg, "<polyline"); n != 2 {
		t.Errorf("%d polylines, want 2 (the line broken at its gap)", n)
	}
	if strings.Contains(svg, "<target>") || strings.Contains(svg, "<b>") {
		t.Error("a label reached the SVG unescaped")
	}
	if len(c.Legend) != 2 || c.Legend[0].Last != "3" || c.Legend[1].Last != "10" {
		t.Errorf("legend %+v", c.Legend)
	}
	if e := renderChart("e", "empty", nil, start, end); !e.Empty || e.SVG != "" {
		t.Errorf("a chart without points: %+v", e)
	}
}

func TestParseAtAndRange(t *testing.T) {
	now := time.Unix(1_790_000_000, 0)
	for _, c := range []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{"", now, ""},
		{"1789999000", time.Unix(1_789_999_000, 0), ""},
		{"1789999000.5", time.UnixMilli(1_789_999_000_500), ""},
		{now.Add(-time.Hour).UTC().Format(time.RFC3339Nano), now.Add(-time.Hour), ""},
		{"yesterday", time.Time{}, "RFC 3339"},
		{now.Add(time.Hour).Format(time.RFC3339), time.Time{}, "in the future"},
	} {
		got, err := parseAt(c.in, now)
		if c.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("parseAt(%q): %v, want an error with %q", c.in, err, c.wantErr)
			}
			continue
		}
		if err != nil || !got.Equal(c.want) {
			t.Errorf("parseAt(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
	for in, want := range map[string]time.Duration{"": 30 * time.Minute, "6h": 6 * time.Hour, "1w": 7 * 24 * time.Hour} {
		if got, err := parseRange(in); err != nil || got != want {
			t.Errorf("parseRange(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"2w", "0s", "-5m", "soon"} {
		if _, err := parseRange(in); err == nil {
			t.Errorf("parseRange(%q) accepted", in)
		}
	}
}
