package web

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/prometheus/prometheus/promql"
)

// A chart is drawn on the server as inline SVG: no script, no library and
// no build step; a browser, a test or curl sees the same markup.
const (
	chartWidth  = 720.0
	chartHeight = 220.0
	padLeft     = 56.0
	padRight    = 12.0
	padTop      = 12.0
	padBottom   = 28.0
)

// palette is Okabe and Ito's colour-blind safe set.
var palette = []string{"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"}

// line is one series of a chart.
type line struct {
	Label  string
	Points []promql.FPoint
	Dashed bool
}

// chart is what a page template draws.
type chart struct {
	ID, Title string
	SVG       template.HTML
	Legend    []legendEntry
	Empty     bool
}

type legendEntry struct{ Label, Color, Last string }

// renderChart draws lines between start and end; y runs from 0 (or the
// lowest value, if negative) to a little above the highest.
func renderChart(id, title string, lines []line, start, end time.Time) chart {
	lo, hi := 0.0, math.Inf(-1)
	for _, l := range lines {
		for _, p := range l.Points {
			lo, hi = math.Min(lo, p.F), math.Max(hi, p.F)
		}
	}
	c := chart{ID: id, Title: title}
	if math.IsInf(hi, -1) {
		c.Empty = true
		return c
	}
	if hi <= lo {
		hi = lo + 1
	}
	hi += (hi - lo) * 0.1
	t0, t1 := float64(start.UnixMilli()), float64(end.UnixMilli())
	x := func(t int64) float64 { return padLeft + (float64(t)-t0)/(t1-t0)*(chartWidth-padLeft-padRight) }
	y := func(v float64) float64 { return padTop + (hi-v)/(hi-lo)*(chartHeight-padTop-padBottom) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg id="%s" class="chart" role="img" aria-label="%s" viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" xmlns="http://www.w3.org/2000/svg">`,
		template.HTMLEscapeString(id), template.HTMLEscapeString(title), chartWidth, chartHeight, chartWidth, chartHeight)
	for i := 0; i <= 4; i++ {
		v := lo + (hi-lo)*float64(i)/4
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%s</text>`,
			padLeft, chartWidth-padRight, y(v), y(v), padLeft-4, y(v)+4, formatValue(v))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11">%s</text><text x="%.1f" y="%.1f" font-size="11" text-anchor="end">%s</text>`,
		padLeft, chartHeight-8, start.UTC().Format("15:04:05"), chartWidth-padRight, chartHeight-8, end.UTC().Format("15:04:05 MST"))
	for i, l := range lines {
		color := palette[i%len(palette)]
		entry := legendEntry{Label: l.Label, Color: color}
		if n := len(l.Points); n > 0 {
			entry.Last = formatValue(l.Points[n-1].F)
		}
		c.Legend = append(c.Legend, entry)
		dash := ""
		if l.Dashed {
			dash = ` stroke-dasharray="6 4"`
		}
		// A gap of more than two steps breaks the line, as Prometheus'
		// graph does for absent samples.
		for _, run := range runs(l.Points, (end.UnixMilli()-start.UnixMilli())/100) {
			pts := make([]string, len(run))
			for j, p := range run {
				pts[j] = fmt.Sprintf("%.1f,%.1f", x(p.T), y(p.F))
			}
			if len(run) == 1 {
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="2" fill="%s"/>`, x(run[0].T), y(run[0].F), color)
				continue
			}
			fmt.Fprintf(&b, `<polyline data-series="%s" fill="none" stroke="%s" stroke-width="2"%s points="%s"/>`,
				template.HTMLEscapeString(l.Label), color, dash, strings.Join(pts, " "))
		}
	}
	b.WriteString(`</svg>`)
	c.SVG = template.HTML(b.String()) //nolint:gosec // built above from escaped labels and numbers
	return c
}

// runs splits points where consecutive ones are more than gap apart.
func runs(ps []promql.FPoint, gap int64) [][]promql.FPoint {
	var out [][]promql.FPoint
	startIdx := 0
	for i := 1; i <= len(ps); i++ {
		if i == len(ps) || ps[i].T-ps[i-1].T > gap {
			if i > startIdx {
				out = append(out, ps[startIdx:i])
			}
			startIdx = i
		}
	}
	return out
}

// formatValue prints a value compactly: 3, 0.25, 1.5k, 2.1M.
func formatValue(v float64) string {
	abs := math.Abs(v)
	switch {
	case abs >= 1e9:
		return fmt.Sprintf("%.3gG", v/1e9)
	case abs >= 1e6:
		return fmt.Sprintf("%.3gM", v/1e6)
	case abs >= 1e4:
		return fmt.Sprintf("%.3gk", v/1e3)
	}
	return fmt.Sprintf("%.4g", v)
}
