package rules

import (
	"errors"
	"fmt"
	"regexp"
	"sort"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
	"github.com/prometheus/prometheus/promql/parser"
)

// Validate checks everything that can be checked without the API server:
// selectors, regexps, templates (parsed, rendered once with sample
// arguments so unknown fields are caught now rather than on the first
// request, and the render parsed as PromQL) and required fields. It returns every problem, each prefixed
// with its field path, e.g. "rules[3].name.matches: error parsing regexp:
// ...". Whether override resources exist is checked by Compile, which has
// a ResourceMapper.
func (c *Config) Validate() (errs []error) {
	defer func() { c.validated = len(errs) == 0 }()
	v := &validator{}
	for i, r := range c.Rules {
		v.rule(fmt.Sprintf("rules[%d]", i), r, true)
	}
	for i, r := range c.ExternalRules {
		v.rule(fmt.Sprintf("externalRules[%d]", i), r, false)
	}
	if rr := c.ResourceRules; rr != nil {
		v.resourceRule("resourceRules.cpu", rr.CPU)
		v.resourceRule("resourceRules.memory", rr.Memory)
		if rr.Window <= 0 {
			v.add("resourceRules.window", errors.New("must be a positive duration"))
		}
	}
	return v.errs
}

type validator struct {
	errs []error
}

func (v *validator) add(path string, err error) {
	v.errs = append(v.errs, fmt.Errorf("%s: %w", path, err))
}

// rule validates one discovery rule. Custom rules must be able to map some
// resource, or they could never answer; external rules need no mapping
// unless they restrict by namespace, which fails only at request time in the
// adapter too.
func (v *validator) rule(path string, r DiscoveryRule, custom bool) {
	if r.SeriesQuery == "" {
		v.add(path+".seriesQuery", errors.New("is required"))
	} else if _, err := parser.NewParser(storage.ParserOptions()).ParseMetricSelector(r.SeriesQuery); err != nil {
		v.add(path+".seriesQuery", err)
	}
	for j, f := range r.SeriesFilters {
		fp := fmt.Sprintf("%s.seriesFilters[%d]", path, j)
		if _, err := newNameFilter(f); err != nil {
			if f.Is != "" && f.IsNot == "" {
				fp += ".is"
			} else if f.IsNot != "" && f.Is == "" {
				fp += ".isNot"
			}
			v.add(fp, err)
		}
	}
	v.name(path+".name", r.Name)
	v.mapping(path+".resources", r.Resources, custom)
	v.query(path+".metricsQuery", r.MetricsQuery)
}

func (v *validator) name(path string, n NameMapping) {
	re, err := regexp.Compile(n.Matches)
	if err != nil {
		v.add(path+".matches", err)
		return
	}
	if n.As == "" && re.NumSubexp() > 1 {
		v.add(path+".as", fmt.Errorf("is required when name.matches %q has more than one capture group", n.Matches))
	}
}

// mapping checks the template's syntax and invertibility, and that each
// override names a resource. Overrides are visited in sorted order so the
// error list is stable.
func (v *validator) mapping(path string, m ResourceMapping, required bool) {
	if m.Template != "" {
		c := &ResourceConverter{groupIdx: -1}
		if err := c.compileTemplate(m.Template); err != nil {
			v.add(path+".template", err)
		}
	}
	lbls := make([]string, 0, len(m.Overrides))
	for l := range m.Overrides {
		lbls = append(lbls, l)
	}
	sort.Strings(lbls)
	for _, l := range lbls {
		if m.Overrides[l].Resource == "" {
			v.add(fmt.Sprintf("%s.overrides[%s].resource", path, l), errors.New("is required"))
		}
	}
	if required && m.Template == "" && len(m.Overrides) == 0 {
		v.add(path, errors.New("template or overrides is required"))
	}
}

// sampleArgs are realistic arguments for a trial render.
var sampleArgs = QueryArgs{
	Series:            "series",
	LabelMatchers:     `namespace="default",pod=~"a|b"`,
	LabelValuesByName: map[string]string{"namespace": "default", "pod": "a|b"},
	GroupBy:           "pod",
	GroupBySlice:      []string{"pod"},
}

func (v *validator) query(path, text string) {
	if text == "" {
		v.add(path, errors.New("is required"))
		return
	}
	t, err := NewQueryTemplate(text)
	if err != nil {
		v.add(path, err)
		return
	}
	q, err := t.Render(sampleArgs)
	if err != nil {
		v.add(path, err)
		return
	}
	// The adapter only finds a broken query when Prometheus rejects it on
	// every request; parsing the trial render with the storage engine's
	// parser options reports it at load instead.
	if _, err := parser.NewParser(storage.ParserOptions()).ParseExpr(q); err != nil {
		v.add(path, fmt.Errorf("rendered query %q: %w", q, err))
	}
}

func (v *validator) resourceRule(path string, r ResourceRule) {
	v.query(path+".containerQuery", r.ContainerQuery)
	v.query(path+".nodeQuery", r.NodeQuery)
	v.mapping(path+".resources", r.Resources, true)
	if r.ContainerLabel == "" {
		v.add(path+".containerLabel", errors.New("is required"))
	}
}
