package grafana

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"
)

//go:embed dashboards/*.json
var files embed.FS

// TagCAdvisor is the tag of dashboards whose panels read the optional
// cAdvisor job (kubelets' /metrics/cadvisor): their expressions return
// data only when the GatewayConfig has cadvisor: {enabled: true}.
const TagCAdvisor = "cadvisor"

// Dashboard is one shipped dashboard file.
type Dashboard struct {
	File  string   // base name under dashboards/, e.g. "health.json"
	UID   string   // Grafana uid
	Title string   // Grafana title
	Tags  []string // Grafana tags; TagCAdvisor marks the cAdvisor dashboard
	JSON  []byte   // the file as shipped, a copy owned by the caller
}

// Expr is one PromQL expression of a dashboard, after variable substitution.
type Expr struct {
	Dashboard    string   // dashboard title
	DashboardUID string   // dashboard uid
	Tags         []string // dashboard tags, shared with the other Exprs of the dashboard
	// Panel is the panel title as written (Grafana variables not
	// substituted); empty for a variable query.
	Panel string
	// RefID is the panel target's refId; for a variable query, empty.
	RefID string
	// Variable names the template variable whose query this is; empty for
	// a panel target.
	Variable string
	// Instant says the panel runs the expression as an instant query;
	// otherwise Grafana runs it as a range query. Variable queries are
	// series selectors Grafana sends as match[]; they are reported as
	// instant.
	Instant bool
	Expr    string
}

// Dashboards returns the shipped dashboards, sorted by file name.
func Dashboards() ([]Dashboard, error) {
	names, err := fs.Glob(files, "dashboards/*.json")
	if err != nil {
		return nil, fmt.Errorf("list dashboards: %w", err)
	}
	sort.Strings(names)
	out := make([]Dashboard, 0, len(names))
	for _, name := range names {
		b, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		var d dashboardJSON
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("parse %s: %w", name, err)
		}
		out = append(out, Dashboard{File: path.Base(name), UID: d.UID, Title: d.Title, Tags: d.Tags, JSON: b})
	}
	return out, nil
}

// Expressions returns every PromQL expression of every shipped dashboard:
// the expr of each target of each panel (panels nested in collapsed rows
// included) and the series selector of each query variable; dashboards in
// file order, and within one, variables before panels. Grafana syntax is
// replaced so that each Expr is plain PromQL, the way Grafana renders it:
//
//   - built-in intervals get fixed values: $__rate_interval "1m" (Grafana's
//     value for the 15s timeInterval of the shipped datasource),
//     $__interval "15s", $__interval_ms "15000", $__range "1h", $__range_s
//     "3600", $__range_ms "3600000"; any other built-in is an error;
//   - a user variable ($name, ${name}, ${name:format}, [[name]]) gets
//     vars[name] verbatim when present (give a regular expression or a
//     literal, as Grafana would insert it); otherwise the default of a
//     textbox, custom or constant variable; otherwise, for a variable with
//     an "All" option, its allValue (".+" in every shipped dashboard: the
//     node, namespace and pod variables), which is allowed only where the
//     reference is a whole regex matcher value, =~"$name", so that it
//     selects every value as "All" does in Grafana. Any other use of a
//     variable without a value is an error, as is a reference to an
//     undefined variable. So the single-valued metric variable of the
//     autoscaling dashboard must be given: Grafana never sends a pattern
//     for it, and a pattern would put several counters of one pod into one
//     rate(). $1 and the like (label_replace) are left alone;
//   - label_values(selector, label) becomes selector, and
//     query_result(expr) becomes expr; a variable query in any other form
//     (label_values without a selector, metrics(), label_names()) is an
//     error.
//
// The e2e test calls it with {"metric": "http_requests_total", "target": "10"}:
// target has a default and may be left out; metric may not.
// vars is not modified.
func Expressions(vars map[string]string) ([]Expr, error) {
	ds, err := Dashboards()
	if err != nil {
		return nil, err
	}
	var out []Expr
	for _, d := range ds {
		es, err := dashboardExpressions(d.JSON, vars)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", d.File, err)
		}
		out = append(out, es...)
	}
	return out, nil
}

// dashboardJSON is the part of Grafana's dashboard model read here.
type dashboardJSON struct {
	UID        string      `json:"uid"`
	Title      string      `json:"title"`
	Tags       []string    `json:"tags"`
	Panels     []panelJSON `json:"panels"`
	Templating struct {
		List []variableJSON `json:"list"`
	} `json:"templating"`
}

type panelJSON struct {
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []targetJSON    `json:"targets"`
	Panels     []panelJSON     `json:"panels"` // a collapsed row's panels
}

type targetJSON struct {
	RefID      string          `json:"refId"`
	Expr       string          `json:"expr"`
	Instant    bool            `json:"instant"`
	Datasource json.RawMessage `json:"datasource"`
}

type variableJSON struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"` // a string, or {"query": "..."} for query variables
	Current    json.RawMessage `json:"current"`
	AllValue   string          `json:"allValue"`
	IncludeAll bool            `json:"includeAll"`
	Multi      bool            `json:"multi"`
	Datasource json.RawMessage `json:"datasource"`
}

// queryString returns a variable's query, whether Grafana stored it as a
// string or as an object with a query field.
func (v variableJSON) queryString() (string, error) {
	if len(v.Query) == 0 {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v.Query, &s); err == nil {
		return s, nil
	}
	var o struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal(v.Query, &o); err != nil {
		return "", fmt.Errorf("variable %s: query is neither a string nor an object: %w", v.Name, err)
	}
	return o.Query, nil
}

// staticValue is the value Grafana uses for a variable whose values are
// written in the dashboard (textbox, custom, constant).
func (v variableJSON) staticValue() (string, bool) {
	switch v.Type {
	case "textbox", "custom", "constant":
	default:
		return "", false
	}
	var cur struct {
		Value json.RawMessage `json:"value"`
	}
	if json.Unmarshal(v.Current, &cur) == nil {
		var s string
		if json.Unmarshal(cur.Value, &s) == nil && s != "" && s != "$__all" {
			return s, true
		}
	}
	q, err := v.queryString()
	if err != nil || q == "" {
		return "", false
	}
	if v.Type == "custom" { // "a,b,c" or "a : x, b : y": the first option
		q = strings.TrimSpace(strings.SplitN(strings.SplitN(q, ",", 2)[0], " : ", 2)[0])
	}
	return q, true
}

func dashboardExpressions(raw []byte, vars map[string]string) ([]Expr, error) {
	var d dashboardJSON
	if err := json.Unmarshal(raw, &d); err != nil {
		return nil, fmt.Errorf("parse dashboard: %w", err)
	}
	s := substituter{vars: vars, defs: map[string]variableJSON{}}
	for _, v := range d.Templating.List {
		s.defs[v.Name] = v
	}
	base := Expr{Dashboard: d.Title, DashboardUID: d.UID, Tags: d.Tags}
	var out []Expr
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, err := v.queryString()
		if err != nil {
			return nil, err
		}
		sel, err := variableSelector(q)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", v.Name, err)
		}
		e, err := s.substitute(sel)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", v.Name, err)
		}
		x := base
		x.Variable, x.Instant, x.Expr = v.Name, true, e
		out = append(out, x)
	}
	var walk func([]panelJSON) error
	walk = func(ps []panelJSON) error {
		for _, p := range ps {
			if err := walk(p.Panels); err != nil {
				return err
			}
			for _, t := range p.Targets {
				e, err := s.substitute(t.Expr)
				if err != nil {
					return fmt.Errorf("panel %q, target %s: %w", p.Title, t.RefID, err)
				}
				x := base
				x.Panel, x.RefID, x.Instant, x.Expr = p.Title, t.RefID, t.Instant, e
				out = append(out, x)
			}
		}
		return nil
	}
	if err := walk(d.Panels); err != nil {
		return nil, err
	}
	return out, nil
}

var (
	// Grafana's own pattern: label_values(selector, label), the selector
	// optional; the last comma separates the label.
	labelValuesRE = regexp.MustCompile(`^\s*label_values\((?:(.+),\s*)?([a-zA-Z_$][a-zA-Z0-9_]*)\)\s*$`)
	queryResultRE = regexp.MustCompile(`^\s*query_result\((.+)\)\s*$`)
)

// variableSelector returns the PromQL inside a query variable's Grafana
// query.
func variableSelector(q string) (string, error) {
	if m := labelValuesRE.FindStringSubmatch(q); m != nil {
		if strings.TrimSpace(m[1]) == "" {
			return "", fmt.Errorf("%q has no series selector to test", q)
		}
		return strings.TrimSpace(m[1]), nil
	}
	if m := queryResultRE.FindStringSubmatch(q); m != nil {
		return strings.TrimSpace(m[1]), nil
	}
	return "", fmt.Errorf("%q: only label_values(selector, label) and query_result(expr) are supported", q)
}

// builtins are the fixed values of Grafana's built-in variables; see
// Expressions.
var builtins = map[string]string{
	"__rate_interval": "1m",
	"__interval":      "15s",
	"__interval_ms":   "15000",
	"__range":         "1h",
	"__range_s":       "3600",
	"__range_ms":      "3600000",
}

// varRefRE matches Grafana's variable syntaxes: ${name}, ${name:format},
// [[name]], [[name:format]] and $name.
var varRefRE = regexp.MustCompile(`\$\{(\w+)(?::[^}]*)?\}|\[\[(\w+)(?::[^\]]*)?\]\]|\$(\w+)`)

var digitsRE = regexp.MustCompile(`^[0-9]+$`)

type substituter struct {
	vars map[string]string
	defs map[string]variableJSON
}

// substitute replaces every variable reference in expr; see Expressions.
func (s substituter) substitute(expr string) (string, error) {
	var b strings.Builder
	last := 0
	for _, m := range varRefRE.FindAllStringSubmatchIndex(expr, -1) {
		start, end := m[0], m[1]
		var name string
		for g := 1; g <= 3; g++ {
			if m[2*g] >= 0 {
				name = expr[m[2*g]:m[2*g+1]]
			}
		}
		val, keep, err := s.value(name, expr, start, end)
		if err != nil {
			return "", err
		}
		b.WriteString(expr[last:start])
		if keep {
			b.WriteString(expr[start:end])
		} else {
			b.WriteString(val)
		}
		last = end
	}
	b.WriteString(expr[last:])
	return b.String(), nil
}

// value is the replacement of the reference expr[start:end] to name; keep
// says to leave the reference as written.
func (s substituter) value(name, expr string, start, end int) (val string, keep bool, err error) {
	if strings.HasPrefix(name, "__") {
		v, ok := builtins[name]
		if !ok {
			return "", false, fmt.Errorf("built-in variable $%s has no fixed value here", name)
		}
		return v, false, nil
	}
	if digitsRE.MatchString(name) {
		return "", true, nil // $1 in label_replace's replacement
	}
	def, ok := s.defs[name]
	if !ok {
		return "", false, fmt.Errorf("$%s is not a variable of the dashboard", name)
	}
	if def.Type == "datasource" {
		return "", false, fmt.Errorf("$%s is a datasource variable, not a value", name)
	}
	if v, ok := s.vars[name]; ok {
		return v, false, nil
	}
	if v, ok := def.staticValue(); ok {
		return v, false, nil
	}
	if def.IncludeAll && def.AllValue != "" && wholeRegexMatcher(expr, start, end) {
		return def.AllValue, false, nil
	}
	return "", false, fmt.Errorf(`$%s has no value: pass it in vars, or give it an "All" option with an allValue and use it only as a whole regex matcher, =~"$%s"`, name, name)
}

// wholeRegexMatcher says whether expr[start:end] is the whole quoted value
// of a =~ matcher.
func wholeRegexMatcher(expr string, start, end int) bool {
	before := expr[:start]
	if !strings.HasSuffix(before, `"`) || !strings.HasPrefix(expr[end:], `"`) {
		return false
	}
	return strings.HasSuffix(strings.TrimRight(strings.TrimSuffix(before, `"`), " "), "=~")
}
