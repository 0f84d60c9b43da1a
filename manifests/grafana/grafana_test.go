package grafana

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// exportedMetrics lists every metric family the gateway stores, and so every
// name a dashboard may select: a dashboard that reads anything else shows an
// empty panel on a real gateway.
var exportedMetrics = map[string]bool{
	// kubelet /metrics/resource, job "kubelet": the keep list of
	// scrape.KubeletJobYAML.
	"container_cpu_usage_seconds_total":  true,
	"container_memory_working_set_bytes": true,
	"container_start_time_seconds":       true,
	"node_cpu_usage_seconds_total":       true,
	"node_memory_working_set_bytes":      true,
	// The scrape loop's report series, per target of every job.
	"up":                                    true,
	"scrape_duration_seconds":               true,
	"scrape_samples_scraped":                true,
	"scrape_samples_post_metric_relabeling": true,
	"scrape_series_added":                   true,
	// What the e2e cluster's simulated pods export (job "kubernetes-pods").
	"http_requests_total": true,
	"queue_depth":         true,
	// The gateway's own metrics, scraped as job "metrics-gateway".
	"metrics_gateway_scrape_failures_total":                     true,
	"metrics_gateway_head_series":                               true,
	"metrics_gateway_series_rejected_total":                     true,
	"metrics_gateway_storage_ready":                             true,
	"prometheus_tsdb_head_series":                               true,
	"prometheus_tsdb_head_samples_appended_total":               true,
	"apiserver_request_total":                                   true,
	"apiserver_request_duration_seconds_bucket":                 true,
	"metrics_gateway_query_api_requests_total":                  true,
	"metrics_gateway_query_api_request_duration_seconds_bucket": true,
	"process_resident_memory_bytes":                             true,
	"process_cpu_seconds_total":                                 true,
	"go_goroutines":                                             true,
	// HorizontalPodAutoscalers (--record-autoscalers): kube-state-metrics'
	// series from the self job, and the recorder's (pkg/autoscaling).
	"kube_horizontalpodautoscaler_info":                    true,
	"kube_horizontalpodautoscaler_spec_min_replicas":       true,
	"kube_horizontalpodautoscaler_spec_max_replicas":       true,
	"kube_horizontalpodautoscaler_status_current_replicas": true,
	"kube_horizontalpodautoscaler_status_desired_replicas": true,
	"kube_horizontalpodautoscaler_spec_target_metric":      true,
	"kube_horizontalpodautoscaler_status_target_metric":    true,
	"kube_horizontalpodautoscaler_status_condition":        true,
	"metrics_gateway_autoscaler_recommendation_replicas":   true,
	"metrics_gateway_autoscaler_replay_desired_replicas":   true,
	"metrics_gateway_autoscaler_target_replicas":           true,
	"metrics_gateway_autoscaler_pod_ready":                 true,
	// The optional cAdvisor job (cadvisorMetrics).
	"container_cpu_cfs_throttled_periods_total": true,
	"container_cpu_cfs_periods_total":           true,
	"container_network_receive_bytes_total":     true,
	"container_network_transmit_bytes_total":    true,
	"container_fs_usage_bytes":                  true,
	"container_memory_rss":                      true,
}

// cadvisorMetrics are stored only with cadvisor: {enabled: true}; only
// dashboards tagged TagCAdvisor may read them.
var cadvisorMetrics = map[string]bool{
	"container_cpu_cfs_throttled_periods_total": true,
	"container_cpu_cfs_periods_total":           true,
	"container_network_receive_bytes_total":     true,
	"container_network_transmit_bytes_total":    true,
	"container_fs_usage_bytes":                  true,
	"container_memory_rss":                      true,
}

// sharedMetrics are stored by both the kubelet job and the cAdvisor job
// (scrape.CadvisorJobName): a selector without a job matcher would add both.
var sharedMetrics = map[string]bool{
	"container_cpu_usage_seconds_total":  true,
	"container_memory_working_set_bytes": true,
}

// e2eVars are the values the end-to-end test passes.
var e2eVars = map[string]string{"metric": "http_requests_total", "target": "10"}

// varSets run every expression with a counter and with a gauge as the
// autoscaling dashboard's metric; the rest take their defaults.
var varSets = []map[string]string{e2eVars, {"metric": "queue_depth"}}

// allowedVariables are the variable names the e2e test and docs rely on.
var allowedVariables = map[string]bool{"datasource": true, "node": true, "namespace": true, "pod": true, "metric": true, "target": true, "job": true, "horizontalpodautoscaler": true}

// checkExpr parses expr with the gateway's parser options and returns the
// metric names it selects. Every selector must name an exported metric, or
// select pod series (a pod matcher) by a name pattern: the custom metrics
// are whatever the pods export. Names that two jobs store need a job
// matcher.
func checkExpr(p parser.Parser, expr string) ([]string, error) {
	e, err := p.ParseExpr(expr)
	if err != nil {
		return nil, fmt.Errorf("parse %q: %w", expr, err)
	}
	var names []string
	var errs []error
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := selectorName(vs)
		switch {
		case name != "" && !exportedMetrics[name]:
			errs = append(errs, fmt.Errorf("%q: the gateway does not store %s", expr, name))
		case sharedMetrics[name] && !hasMatcher(vs, "job"):
			errs = append(errs, fmt.Errorf("%q: %s is stored by the kubelet and cAdvisor jobs; select one with a job matcher", expr, name))
		case name != "":
			names = append(names, name)
		case !hasMatcher(vs, "pod"):
			errs = append(errs, fmt.Errorf("%q: selector %s names no exported metric and does not restrict itself to pod series", expr, vs))
		}
		return nil
	})
	return names, errors.Join(errs...)
}

// selectorName returns the metric a selector names, by equality or by a
// regexp that is a plain name; "" when it selects names by a pattern or not
// at all.
func selectorName(vs *parser.VectorSelector) string {
	for _, m := range vs.LabelMatchers {
		if m.Name != labels.MetricName {
			continue
		}
		if m.Type == labels.MatchEqual || (m.Type == labels.MatchRegexp && regexp.QuoteMeta(m.Value) == m.Value) {
			return m.Value
		}
	}
	return ""
}

func hasMatcher(vs *parser.VectorSelector, label string) bool {
	return slices.ContainsFunc(vs.LabelMatchers, func(m *labels.Matcher) bool { return m.Name == label })
}

func TestCheckExpr(t *testing.T) {
	p := parser.NewParser(storage.ParserOptions())
	tests := []struct {
		name, expr string
		wantErr    string
	}{
		{"kubelet rate", `sum by (node) (rate(node_cpu_usage_seconds_total{node=~".+"}[1m]))`, ""},
		{"shared name with its job", `sum(container_memory_working_set_bytes{job="kubelet"})`, ""},
		{"shared name without a job", `sum(container_memory_working_set_bytes{namespace=~".+"})`, "select one with a job matcher"},
		{"name as matcher", `{__name__="up",job="kubelet"}`, ""},
		{"literal regexp name", `{__name__=~"queue_depth",pod=~".+"}`, ""},
		{"pattern over pod series", `{__name__=~".+",namespace=~".+",pod!=""}`, ""},
		{"syntax error", `sum(rate(node_cpu_usage_seconds_total[1m])`, "parse"},
		{"grafana variable left in", `rate(up[$__rate_interval])`, "parse"},
		{"label_values is not PromQL", `label_values(up, job)`, "parse"},
		{"metric not stored", `sum(kube_pod_info)`, "does not store kube_pod_info"},
		{"kubelet series dropped by the keep list", `pod_cpu_usage_seconds_total`, "does not store"},
		{"scrape errors per target are not kept", `metrics_gateway_scrape_errors_total`, "does not store"},
		{"one good one bad", `up / ignoring(x) kube_node_info`, "does not store kube_node_info"},
		{"pattern outside pod series", `{__name__=~".+",namespace=~".+"}`, "does not restrict"},
		{"no name at all", `{job="kubelet"}`, "does not restrict"},
		{"only a negative name matcher", `{__name__!~"container_.+",namespace!=""}`, "does not restrict"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkExpr(p, tc.expr)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("checkExpr(%q) = %v, want no error", tc.expr, err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("checkExpr(%q) = %v, want an error containing %q", tc.expr, err, tc.wantErr)
			}
		})
	}
}

func TestExpressions(t *testing.T) {
	p := parser.NewParser(storage.ParserOptions())
	for _, vars := range varSets {
		t.Run(fmt.Sprint(vars), func(t *testing.T) {
			exprs, err := Expressions(vars)
			if err != nil {
				t.Fatal(err)
			}
			ds, err := Dashboards()
			if err != nil {
				t.Fatal(err)
			}
			perDashboard := map[string]int{}
			for _, e := range exprs {
				perDashboard[e.DashboardUID]++
				where := fmt.Sprintf("%s: panel %q %s variable %q", e.Dashboard, e.Panel, e.RefID, e.Variable)
				if (e.Panel == "") == (e.Variable == "") || (e.Panel != "" && e.RefID == "") {
					t.Errorf("%s: want either a panel with a refId or a variable", where)
				}
				if strings.Contains(e.Expr, "$__") {
					t.Errorf("%s: built-in variable left in %q", where, e.Expr)
				}
				names, err := checkExpr(p, e.Expr)
				if err != nil {
					t.Errorf("%s: %v", where, err)
				}
				cadvisor := slices.Contains(e.Tags, TagCAdvisor)
				for _, n := range names {
					if cadvisorMetrics[n] && !cadvisor {
						t.Errorf("%s: reads %s, which needs the cAdvisor job, in a dashboard not tagged %q", where, n, TagCAdvisor)
					}
				}
			}
			for _, d := range ds {
				if perDashboard[d.UID] == 0 {
					t.Errorf("%s: no expressions", d.File)
				}
				t.Logf("%s: %d expressions", d.File, perDashboard[d.UID])
			}
		})
	}
}

// The e2e test passes only metric and target: everything else must default
// to ".+" inside a regexp matcher.
func TestExpressionsE2EVars(t *testing.T) {
	if _, err := Expressions(nil); err == nil || !strings.Contains(err.Error(), "$metric has no value") {
		t.Errorf("Expressions(nil) error %v, want one saying $metric has no value", err)
	}
	exprs, err := Expressions(e2eVars)
	if err != nil {
		t.Fatal(err)
	}
	sawMetric, sawTarget := false, false
	for _, e := range exprs {
		sawMetric = sawMetric || strings.Contains(e.Expr, `__name__=~"http_requests_total"`)
		sawTarget = sawTarget || strings.Contains(e.Expr, "vector(10)")
		if strings.Contains(e.Expr, `=~""`) {
			t.Errorf("%s %q: empty regexp matcher in %q", e.Dashboard, e.Panel, e.Expr)
		}
	}
	if !sawMetric || !sawTarget {
		t.Errorf("metric substituted: %v, target substituted: %v; want both", sawMetric, sawTarget)
	}
}

// panel is the generic form of a panel, for checks of fields Expressions
// does not read.
type panel map[string]any

func walkPanels(ps []any, f func(panel)) {
	for _, p := range ps {
		m, _ := p.(map[string]any)
		f(m)
		if nested, ok := m["panels"].([]any); ok {
			walkPanels(nested, f)
		}
	}
}

func isDatasourceVar(v any) bool {
	m, ok := v.(map[string]any)
	return ok && m["type"] == "prometheus" && m["uid"] == "${datasource}"
}

func TestDashboards(t *testing.T) {
	ds, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 5 {
		t.Errorf("%d dashboards, want 5", len(ds))
	}
	uids, titles := map[string]string{}, map[string]string{}
	for _, d := range ds {
		if d.UID == "" || len(d.UID) > 40 {
			t.Errorf("%s: uid %q, want 1 to 40 characters", d.File, d.UID)
		}
		if other, dup := uids[d.UID]; dup {
			t.Errorf("%s and %s share uid %q", other, d.File, d.UID)
		}
		if other, dup := titles[d.Title]; dup {
			t.Errorf("%s and %s share title %q", other, d.File, d.Title)
		}
		uids[d.UID], titles[d.Title] = d.File, d.File
		if !slices.Contains(d.Tags, "metrics-gateway") {
			t.Errorf("%s: not tagged metrics-gateway (the dashboards link to each other by that tag)", d.File)
		}
		t.Run(d.File, func(t *testing.T) { checkDashboard(t, d) })
	}
}

func checkDashboard(t *testing.T, d Dashboard) {
	var m map[string]any
	if err := json.Unmarshal(d.JSON, &m); err != nil {
		t.Fatal(err)
	}
	if v, _ := m["schemaVersion"].(float64); v < 39 {
		t.Errorf("schemaVersion %v, want at least 39", m["schemaVersion"])
	}
	if m["id"] != nil {
		t.Errorf("id %v, want null so that imports create the dashboard", m["id"])
	}
	ids := map[float64]bool{}
	panels, _ := m["panels"].([]any)
	nPanels := 0
	walkPanels(panels, func(p panel) {
		id, _ := p["id"].(float64)
		if ids[id] {
			t.Errorf("panel %q: id %v used twice", p["title"], id)
		}
		ids[id] = true
		if p["type"] == "row" {
			return
		}
		nPanels++
		if !isDatasourceVar(p["datasource"]) {
			t.Errorf("panel %q: datasource %v, want the ${datasource} variable", p["title"], p["datasource"])
		}
		targets, _ := p["targets"].([]any)
		if len(targets) == 0 {
			t.Errorf("panel %q: no queries", p["title"])
		}
		refs := map[any]bool{}
		for _, tg := range targets {
			tm, _ := tg.(map[string]any)
			if !isDatasourceVar(tm["datasource"]) {
				t.Errorf("panel %q, target %v: datasource %v, want the ${datasource} variable", p["title"], tm["refId"], tm["datasource"])
			}
			if refs[tm["refId"]] || tm["refId"] == "" {
				t.Errorf("panel %q: refId %q empty or repeated", p["title"], tm["refId"])
			}
			refs[tm["refId"]] = true
		}
		if desc, _ := p["description"].(string); desc == "" {
			t.Errorf("panel %q: no description", p["title"])
		}
	})
	if nPanels == 0 {
		t.Error("no panels")
	}
	checkVariables(t, m)
}

func checkVariables(t *testing.T, m map[string]any) {
	tmpl, _ := m["templating"].(map[string]any)
	list, _ := tmpl["list"].([]any)
	sawDatasource := false
	for _, v := range list {
		vm, _ := v.(map[string]any)
		name, _ := vm["name"].(string)
		if !allowedVariables[name] {
			t.Errorf("variable %q: not one of the names the e2e test and the docs use", name)
		}
		switch vm["type"] {
		case "datasource":
			sawDatasource = name == "datasource" && vm["query"] == "prometheus"
		case "query":
			if !isDatasourceVar(vm["datasource"]) {
				t.Errorf("variable %q: datasource %v, want the ${datasource} variable", name, vm["datasource"])
			}
			// "All" must render as the ".+" that Expressions tests.
			if vm["includeAll"] == true && vm["allValue"] != ".+" {
				t.Errorf("variable %q: allValue %v, want .+", name, vm["allValue"])
			}
		}
	}
	if !sawDatasource {
		t.Error(`no datasource variable named "datasource" of type prometheus`)
	}
}

func TestSubstitution(t *testing.T) {
	vars := `"templating": {"list": [
		{"name": "datasource", "type": "datasource", "query": "prometheus"},
		{"name": "namespace", "type": "query", "query": {"query": "label_values(up{namespace!=\"\"}, namespace)"}, "includeAll": true, "allValue": ".+"},
		{"name": "node", "type": "query", "query": "label_values(up{node=~\"$namespace\"}, node)"},
		{"name": "pod", "type": "query", "query": "label_values(up{pod!=\"\"}, pod)", "includeAll": true},
		{"name": "target", "type": "textbox", "query": "10", "current": {"value": "12"}},
		{"name": "size", "type": "custom", "query": "small : 1, large : 2"}
	]}`
	tests := []struct {
		name, expr string
		vars       map[string]string
		want       string // the substituted expression, or the error's text
		wantErr    bool
	}{
		{"rate interval", `rate(up[$__rate_interval])`, nil, `rate(up[1m])`, false},
		{"interval and range", `avg_over_time(up[$__interval]) + changes(up[${__range}])`, nil, `avg_over_time(up[15s]) + changes(up[1h])`, false},
		{"unknown built-in", `up offset $__from`, nil, `$__from has no fixed value`, true},
		{"query variable in a regexp matcher", `up{namespace=~"$namespace"}`, nil, `up{namespace=~".+"}`, false},
		{"braces and format", `up{namespace=~"${namespace:regex}"}`, nil, `up{namespace=~".+"}`, false},
		{"old brackets", `up{namespace=~"[[namespace]]"}`, nil, `up{namespace=~".+"}`, false},
		{"spaces around the operator", `up{namespace =~ "$namespace"}`, nil, `up{namespace =~ ".+"}`, false},
		{"equality matcher needs a value", `up{namespace="$namespace"}`, nil, `$namespace has no value`, true},
		{"part of a regexp needs a value", `up{namespace=~"$namespace-.*"}`, nil, `$namespace has no value`, true},
		{"outside a matcher needs a value", `sum by ($namespace) (up)`, nil, `$namespace has no value`, true},
		{"no All option, no default", `up{node=~"$node"}`, nil, `$node has no value`, true},
		{"All option without allValue", `up{pod=~"$pod"}`, nil, `$pod has no value`, true},
		{"no All option, from vars", `up{node=~"$node"}`, map[string]string{"node": "n1|n2"}, `up{node=~"n1|n2"}`, false},
		{"vars win", `up{namespace=~"$namespace"}`, map[string]string{"namespace": "shop"}, `up{namespace=~"shop"}`, false},
		{"vars give any variable a value", `up{namespace="$namespace"}`, map[string]string{"namespace": "shop"}, `up{namespace="shop"}`, false},
		{"textbox current value", `vector($target)`, nil, `vector(12)`, false},
		{"textbox from vars", `vector($target)`, map[string]string{"target": "3"}, `vector(3)`, false},
		{"custom first option", `vector($size)`, nil, `vector(small)`, false},
		{"undefined variable", `up{namespace=~"$namesapce"}`, nil, `$namesapce is not a variable`, true},
		{"datasource is not a value", `up{x=~"$datasource"}`, nil, `datasource variable`, true},
		{"label_replace captures stay", `label_replace(up, "a", "$1", "b", "(.+)")`, nil, `label_replace(up, "a", "$1", "b", "(.+)")`, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := fmt.Sprintf(`{"uid": "u", "title": "T", %s, "panels": [{"type": "row", "title": "r", "panels": [{"type": "timeseries", "title": "P", "targets": [{"refId": "A", "expr": %q}]}]}]}`, vars, tc.expr)
			exprs, err := dashboardExpressions([]byte(raw), tc.vars)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("error %v, want one containing %q", err, tc.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			last := exprs[len(exprs)-1]
			if last.Expr != tc.want || last.Panel != "P" || last.RefID != "A" || last.Dashboard != "T" || last.DashboardUID != "u" {
				t.Fatalf("got %+v, want panel P, refId A, expr %q", last, tc.want)
			}
		})
	}
}

func TestVariableQueries(t *testing.T) {
	tests := []struct {
		query, want string
		wantErr     bool
	}{
		{`label_values(node_cpu_usage_seconds_total, node)`, `node_cpu_usage_seconds_total`, false},
		{`label_values({namespace=~"$namespace",pod!=""}, __name__)`, `{namespace=~"$namespace",pod!=""}`, false},
		{`label_values(up{a="x,y"}, job)`, `up{a="x,y"}`, false},
		{`query_result(topk(5, up))`, `topk(5, up)`, false},
		{`label_values(job)`, "", true},
		{`metrics(up.*)`, "", true},
		{`label_names()`, "", true},
	}
	for _, tc := range tests {
		got, err := variableSelector(tc.query)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("variableSelector(%q) = %q, %v; want %q, error %v", tc.query, got, err, tc.want, tc.wantErr)
		}
	}
}
