package web

import (
	"fmt"
	"html/template"
	"strings"

	"github.com/metrics-gateway/metrics-gateway/pkg/autoscaling"
)

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"milli":   milli,
	"ratio":   func(f float64) string { return fmt.Sprintf("%.3f", f) },
	"assumed": func(p *int64) string { return optionalMilli(p) },
	"request": func(v int64) string { return optionalMilli(&v) },
}).Parse(layout + listPage + hpaPage + graphPage + errorPage))

// milli shows a value as the HPA does: a percent for utilization targets,
// milli-units otherwise.
func milli(v int64, m autoscaling.MetricExplain) string {
	if strings.Contains(m.Target, "utilization") {
		return fmt.Sprintf("%d%%", v)
	}
	return fmt.Sprintf("%dm", v)
}

func optionalMilli(p *int64) string {
	if p == nil || *p == 0 {
		return ""
	}
	return fmt.Sprintf("%dm", *p)
}

const layout = `
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} · metrics-gateway</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0 24px 24px;color:#222}
header{display:flex;gap:16px;align-items:baseline;border-bottom:1px solid #ccc;margin-bottom:12px}
header a{color:#0072B2;text-decoration:none}
table{border-collapse:collapse;margin:8px 0}
td,th{border-bottom:1px solid #e4e4e4;padding:3px 10px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
.verdict{font-size:17px;font-weight:600;background:#f1f7fb;border-left:4px solid #0072B2;padding:8px 12px}
.err{color:#a00}
.charts{display:flex;flex-wrap:wrap;gap:16px}
.legend span{margin-right:12px;white-space:nowrap}
.legend i{display:inline-block;width:12px;height:3px;vertical-align:middle;margin-right:4px}
.state-used{color:#096}.state-ignored,.state-unready,.state-missing{color:#b50}
</style></head><body>
<header><h2>metrics-gateway</h2><a href="/ui/">Autoscalers</a><a href="/ui/graph">Graph</a></header>
{{end}}
{{define "foot"}}</body></html>{{end}}
{{define "chart"}}<figure>
<figcaption><b>{{.Title}}</b></figcaption>
{{if .Empty}}<p class="empty">No samples in this range.</p>{{else}}{{.SVG}}
<div class="legend">{{range .Legend}}<span><i style="background:{{.Color}}"></i>{{.Label}} {{.Last}}</span>{{end}}</div>{{end}}
</figure>{{end}}
`

const listPage = `
{{define "list"}}{{template "head" .}}
<h1>Autoscalers</h1>
{{if .HPAs}}<table id="hpas"><tr><th>Namespace</th><th>Name</th><th>Target</th><th>Min</th><th>Max</th><th>Current</th><th>Desired</th></tr>
{{range .HPAs}}<tr><td>{{.Namespace}}</td><td><a href="/ui/hpa/{{.Namespace}}/{{.Name}}">{{.Name}}</a></td>
<td>{{.Spec.ScaleTargetRef.Kind}}/{{.Spec.ScaleTargetRef.Name}}</td><td>{{with .Spec.MinReplicas}}{{.}}{{else}}1{{end}}</td><td>{{.Spec.MaxReplicas}}</td>
<td>{{.Status.CurrentReplicas}}</td><td>{{.Status.DesiredReplicas}}</td></tr>
{{end}}</table>{{else}}<p>No HorizontalPodAutoscalers.</p>{{end}}
{{template "foot"}}{{end}}
`

const hpaPage = `
{{define "hpa"}}{{template "head" .}}
<h1>{{.Title}}</h1>
<p>{{.HPA.Spec.ScaleTargetRef.Kind}} {{.HPA.Spec.ScaleTargetRef.Name}} · range:
{{$r := .Range}}{{$base := printf "/ui/hpa/%s/%s" .HPA.Namespace .HPA.Name}}{{range .Ranges}}<a href="{{$base}}?range={{.}}">{{if eq . $r}}<b>{{.}}</b>{{else}}{{.}}{{end}}</a> {{end}}</p>
{{if .ExplainErr}}<p id="verdict" class="verdict err">cannot explain: {{.ExplainErr}}</p>{{else}}
<p id="verdict" class="verdict">{{.E.Verdict}}</p>
<p id="replicas">current <b id="current">{{.E.Current}}</b>, min {{.E.Min}}, max {{.E.Max}}; highest proposal {{.E.Proposal}}{{with .E.Winner}} ({{.}}){{end}},
after stabilization {{.E.Stabilized}}, desired <b id="desired">{{.E.Desired}}</b> ({{.E.LimitReason}}).
{{if .E.HistoryReconstructed}}Stabilization and rate limits saw the recommendations and changes the gateway recorded (reconstructed, not the controller's memory).{{end}}
Explained at {{.E.At.UTC.Format "15:04:05 MST"}}.</p>{{end}}
<div class="charts">{{range .Charts}}{{template "chart" .}}{{end}}</div>
{{range $i, $m := .E.Metrics}}
<h3 class="metric">{{$m.Name}} <small>({{$m.Type}}, target {{$m.Target}})</small></h3>
{{if $m.Error}}<p class="err">could not be read: {{$m.Error}}</p>{{else}}
<p>current {{milli $m.Verdict.Current $m}}, usage ratio {{ratio $m.Verdict.Ratio}}, proposal {{$m.Verdict.Proposal}}: {{$m.Verdict.Reason}}</p>
{{if $m.Verdict.Pods}}<table class="pods"><tr><th>Pod</th><th>State</th><th>Value</th><th>Request</th><th>Assumed</th><th>Why</th></tr>
{{range $m.Verdict.Pods}}<tr><td>{{.Name}}</td><td class="state-{{.State}}">{{.State}}</td><td class="value">{{.Value}}m</td><td>{{request .Request}}</td><td>{{assumed .Assumed}}</td><td>{{.Reason}}</td></tr>
{{end}}</table>{{end}}{{end}}
{{end}}
<p><a href="/explain/hpa/{{.HPA.Namespace}}/{{.HPA.Name}}">as JSON</a></p>
{{template "foot"}}{{end}}
`

const graphPage = `
{{define "graph"}}{{template "head" .}}
<h1>Graph</h1>
<form method="get" action="/ui/graph"><input name="expr" size="80" value="{{.Expr}}" placeholder="PromQL, e.g. sum(rate(http_requests_total[1m])) by (pod)">
<select name="range">{{$r := .Range}}{{range .Ranges}}<option{{if eq . $r}} selected{{end}}>{{.}}</option>{{end}}</select>
<button type="submit">Chart</button></form>
{{if .Error}}<p class="err">{{.Error}}</p>{{else if .Expr}}{{template "chart" .Chart}}{{end}}
{{template "foot"}}{{end}}
`

const errorPage = `
{{define "error"}}{{template "head" .}}<h1>{{.Title}}</h1><p class="err">{{.Error}}</p>{{template "foot"}}{{end}}
`
