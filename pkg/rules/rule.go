package rules

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Rule is a compiled DiscoveryRule. It is immutable and safe for concurrent
// use.
type Rule struct {
	seriesQuery string
	matchers    []*labels.Matcher
	filters     []nameFilter
	nameMatches *regexp.Regexp
	nameAs      string
	conv        *ResourceConverter
	query       *queryBuilder
}

// nameFilter keeps a series name when the regexp's verdict equals keep.
type nameFilter struct {
	re   *regexp.Regexp
	keep bool
}

func newNameFilter(f RegexFilter) (nameFilter, error) {
	switch {
	case f.Is != "" && f.IsNot != "":
		return nameFilter{}, fmt.Errorf("cannot have both an `is` (%q) and `isNot` (%q) expression in a single filter", f.Is, f.IsNot)
	case f.Is == "" && f.IsNot == "":
		return nameFilter{}, errors.New("must have either an `is` or `isNot` expression in a filter")
	}
	raw, keep := f.Is, true
	if raw == "" {
		raw, keep = f.IsNot, false
	}
	re, err := regexp.Compile(raw)
	if err != nil {
		return nameFilter{}, err
	}
	return nameFilter{re: re, keep: keep}, nil
}

// NewRule compiles one rule. The first error is returned; Config.Validate
// reports all of them with field paths.
func NewRule(cfg DiscoveryRule, mapper ResourceMapper) (*Rule, error) {
	r := &Rule{seriesQuery: cfg.SeriesQuery}
	var err error
	if r.matchers, err = parser.NewParser(storage.ParserOptions()).ParseMetricSelector(cfg.SeriesQuery); err != nil {
		return nil, fmt.Errorf("seriesQuery %q: %w", cfg.SeriesQuery, err)
	}
	for _, f := range cfg.SeriesFilters {
		nf, err := newNameFilter(f)
		if err != nil {
			return nil, fmt.Errorf("series filter of series query %q: %w", cfg.SeriesQuery, err)
		}
		r.filters = append(r.filters, nf)
	}
	if r.nameMatches, r.nameAs, err = compileName(cfg.Name); err != nil {
		return nil, fmt.Errorf("name of series query %q: %w", cfg.SeriesQuery, err)
	}
	if cfg.Name.Matches != "" {
		// The adapter appends name.matches as a filter, so a rule only
		// serves series its name pattern can rename.
		r.filters = append(r.filters, nameFilter{re: r.nameMatches, keep: true})
	}
	if r.conv, err = NewResourceConverter(cfg.Resources, mapper); err != nil {
		return nil, err
	}
	if cfg.MetricsQuery == "" {
		return nil, fmt.Errorf("series query %q: metricsQuery is required", cfg.SeriesQuery)
	}
	tmpl, err := NewQueryTemplate(cfg.MetricsQuery)
	if err != nil {
		return nil, fmt.Errorf("series query %q: %w", cfg.SeriesQuery, err)
	}
	r.query = &queryBuilder{
		tmpl:       tmpl,
		conv:       r.conv,
		namespaced: cfg.Resources.Namespaced == nil || *cfg.Resources.Namespaced,
	}
	return r, nil
}

// compileName returns the name regexp and the default-applied "as".
func compileName(n NameMapping) (*regexp.Regexp, string, error) {
	pattern := n.Matches
	if pattern == "" {
		pattern = ".*"
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, "", err
	}
	as := n.As
	if as == "" {
		switch re.NumSubexp() {
		case 0:
			as = "$0"
		case 1:
			as = "$1"
		default:
			return nil, "", fmt.Errorf("must specify an 'as' value for name matcher %q", n.Matches)
		}
	}
	return re, as, nil
}

// SeriesQuery returns the rule's series selector as written.
func (r *Rule) SeriesQuery() string { return r.seriesQuery }

// SeriesMatchers returns the parsed series selector, for listing series
// from storage. The slice and matchers are shared: callers must not modify
// them.
func (r *Rule) SeriesMatchers() []*labels.Matcher { return r.matchers }

// MatchesName reports whether a series name passes every series filter,
// name.matches included. Series are assumed to match SeriesMatchers.
func (r *Rule) MatchesName(name string) bool {
	for _, f := range r.filters {
		if f.re.MatchString(name) != f.keep {
			return false
		}
	}
	return true
}

// Selects reports whether a series matches the series query and passes
// the filters, for callers that list series more broadly than the rule.
func (r *Rule) Selects(series labels.Labels) bool {
	for _, m := range r.matchers {
		if !m.Matches(series.Get(m.Name)) {
			return false
		}
	}
	return r.MatchesName(series.Get(labels.MetricName))
}

// FilterSeries returns the series whose names pass MatchesName, in a new
// slice; the input is not modified.
func (r *Rule) FilterSeries(series []labels.Labels) []labels.Labels {
	out := make([]labels.Labels, 0, len(series))
	for _, s := range series {
		if r.MatchesName(s.Get(labels.MetricName)) {
			out = append(out, s)
		}
	}
	return out
}

// MetricNameForSeries returns the API metric name of a series name.
func (r *Rule) MetricNameForSeries(series string) (string, error) {
	m := r.nameMatches.FindStringSubmatchIndex(series)
	if m == nil {
		return "", fmt.Errorf("series name %q did not match expected pattern %q", series, r.nameMatches.String())
	}
	return string(r.nameMatches.ExpandString(nil, r.nameAs, series, m)), nil
}

// ResourcesForSeries returns the group-resources a series describes and
// whether it is namespaced; see ResourceConverter.ResourcesForSeries.
func (r *Rule) ResourcesForSeries(series labels.Labels) ([]schema.GroupResource, bool) {
	return r.conv.ResourcesForSeries(series)
}

// LabelForResource returns the label naming a normalized group-resource.
func (r *Rule) LabelForResource(gr schema.GroupResource) (string, error) {
	return r.conv.LabelForResource(gr)
}

// QueryForSeries renders the PromQL for a custom metric: series is the
// stored series name (not the API name), gr the normalized resource asked
// for, namespace empty for cluster-scoped objects, sel the request's metric
// label selector (nil or Everything for none) and names the objects.
func (r *Rule) QueryForSeries(series string, gr schema.GroupResource, namespace string, sel k8slabels.Selector, names ...string) (string, error) {
	return r.query.build(series, gr, namespace, nil, sel, names...)
}

// QueryForExternalSeries renders the PromQL for an external metric.
func (r *Rule) QueryForExternalSeries(series, namespace string, sel k8slabels.Selector) (string, error) {
	return r.query.buildExternal(series, namespace, sel)
}
