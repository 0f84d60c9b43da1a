package rules

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/template"

	"github.com/prometheus/common/model"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
)

// Errors returned when a metric label selector cannot be expressed exactly
// in PromQL. The adapter refuses such requests rather than answer a
// different question, and so do we.
var (
	ErrLabelNotSpecified      = errors.New("label not specified")
	ErrUnsupportedOperator    = errors.New("operator not supported by query builder")
	ErrMalformedQuery         = errors.New("malformed query")
	ErrQueryUnsupportedValues = errors.New("operator does not support values")
)

// QueryArgs are the fields a metricsQuery (or containerQuery, nodeQuery)
// template sees; the names are the adapter's.
type QueryArgs struct {
	// Series is the series name.
	Series string
	// LabelMatchers is the comma-separated PromQL matchers for the request:
	// metric label selector first, then namespace, then the resource names.
	LabelMatchers string
	// LabelValuesByName maps each matched label to its value, several
	// values joined with "|".
	LabelValuesByName map[string]string
	// GroupBy is GroupBySlice joined with commas.
	GroupBy      string
	GroupBySlice []string
}

// QueryTemplate is a compiled metrics query template.
type QueryTemplate struct {
	tmpl *template.Template
}

// NewQueryTemplate parses text with the adapter's << >> delimiters.
func NewQueryTemplate(text string) (*QueryTemplate, error) {
	t, err := template.New("metrics-query").Delims("<<", ">>").Parse(text)
	if err != nil {
		return nil, fmt.Errorf("parse metrics query template %q: %w", text, err)
	}
	return &QueryTemplate{tmpl: t}, nil
}

// Render executes the template. An empty result is an error, as in the
// adapter, because an empty query would evaluate to nothing useful.
func (q *QueryTemplate) Render(args QueryArgs) (string, error) {
	var buf bytes.Buffer
	if err := q.tmpl.Execute(&limitWriter{w: &buf, n: maxRender}, args); err != nil {
		return "", err
	}
	if buf.Len() == 0 {
		return "", errors.New("empty query produced by metrics query template")
	}
	return buf.String(), nil
}

// queryBuilder renders one rule's template for requests, resolving the
// namespace and resource labels through the rule's ResourceConverter.
type queryBuilder struct {
	tmpl       *QueryTemplate
	conv       *ResourceConverter
	namespaced bool // external only: whether the namespace restricts
}

// build renders a custom-metrics (object) query: the selector's matchers,
// then namespace="ns" when namespace is set, then the resource label equal
// to the single name or matching the names joined with "|"; grouped by the
// resource label and extraGroupBy.
func (b *queryBuilder) build(series string, gr schema.GroupResource, namespace string, extraGroupBy []string, sel k8slabels.Selector, names ...string) (string, error) {
	exprs, byName, err := b.matchers(sel, namespace)
	if err != nil {
		return "", err
	}
	resLabel, err := b.conv.LabelForResource(gr)
	if err != nil {
		return "", err
	}
	target := strings.Join(names, "|")
	if len(names) > 1 {
		exprs = append(exprs, labelMatches(resLabel, target))
	} else {
		exprs = append(exprs, labelEq(resLabel, target))
	}
	byName[resLabel] = target
	groupBy := append([]string{resLabel}, extraGroupBy...)
	return b.tmpl.Render(QueryArgs{
		Series:            series,
		LabelMatchers:     strings.Join(exprs, ","),
		LabelValuesByName: byName,
		GroupBy:           strings.Join(groupBy, ","),
		GroupBySlice:      groupBy,
	})
}

// matchers turns the metric label selector, and the namespace when set,
// into PromQL label matchers and the values by label name.
func (b *queryBuilder) matchers(sel k8slabels.Selector, namespace string) ([]string, map[string]string, error) {
	parts := selectorParts(sel)
	if namespace != "" {
		nsLabel, err := b.conv.LabelForResource(namespaceResource)
		if err != nil {
			return nil, nil, err
		}
		parts = append(parts, queryPart{label: nsLabel, values: []string{namespace}, op: selection.Equals})
	}
	return processParts(parts)
}

// buildExternal renders an external-metrics query: no resource label and no
// grouping; the namespace restricts only when the rule is namespaced.
func (b *queryBuilder) buildExternal(series, namespace string, sel k8slabels.Selector) (string, error) {
	if !b.namespaced {
		namespace = ""
	}
	exprs, byName, err := b.matchers(sel, namespace)
	if err != nil {
		return "", err
	}
	return b.tmpl.Render(QueryArgs{
		Series:            series,
		LabelMatchers:     strings.Join(exprs, ","),
		LabelValuesByName: byName,
		GroupBy:           "",
		GroupBySlice:      []string{},
	})
}

type queryPart struct {
	label  string
	values []string
	op     selection.Operator
}

// selectorParts lists the selector's requirements in the selector's own
// order (sorted by key for parsed selectors), values sorted.
func selectorParts(sel k8slabels.Selector) []queryPart {
	if sel == nil {
		return nil
	}
	reqs, _ := sel.Requirements()
	parts := make([]queryPart, 0, len(reqs))
	for _, r := range reqs {
		parts = append(parts, queryPart{label: r.Key(), values: r.Values().List(), op: r.Operator()})
	}
	return parts
}

func processParts(parts []queryPart) ([]string, map[string]string, error) {
	exprs := make([]string, 0, len(parts)+1)
	byName := make(map[string]string, len(parts)+1)
	for _, p := range parts {
		if p.label == "" {
			return nil, nil, ErrLabelNotSpecified
		}
		if p.op == selection.GreaterThan || p.op == selection.LessThan {
			return nil, nil, ErrUnsupportedOperator
		}
		expr, err := partExpr(p)
		if err != nil {
			return nil, nil, err
		}
		exprs = append(exprs, expr)
		byName[p.label] = strings.Join(p.values, "|")
	}
	return exprs, byName, nil
}

// partExpr follows the adapter's table: one value keeps the operator's
// meaning (in and notin become regex matches, so a single value may be a
// regex passthrough); several values always become a regex alternation;
// exists and !exists compare with the empty string.
func partExpr(p queryPart) (string, error) {
	switch len(p.values) {
	case 0:
		switch p.op {
		case selection.Exists:
			return labelNeq(p.label, ""), nil
		case selection.DoesNotExist:
			return labelEq(p.label, ""), nil
		case selection.Equals, selection.DoubleEquals, selection.NotEquals, selection.In, selection.NotIn:
			return "", ErrMalformedQuery
		}
	case 1:
		v := p.values[0]
		switch p.op {
		case selection.Equals, selection.DoubleEquals:
			return labelEq(p.label, v), nil
		case selection.NotEquals:
			return labelNeq(p.label, v), nil
		case selection.In:
			return labelMatches(p.label, v), nil
		case selection.NotIn:
			return labelNotMatches(p.label, v), nil
		case selection.Exists, selection.DoesNotExist:
			return "", ErrQueryUnsupportedValues
		}
	default:
		v := strings.Join(p.values, "|")
		switch p.op {
		case selection.Equals, selection.DoubleEquals, selection.In:
			return labelMatches(p.label, v), nil
		case selection.NotEquals, selection.NotIn:
			return labelNotMatches(p.label, v), nil
		case selection.Exists, selection.DoesNotExist:
			return "", ErrQueryUnsupportedValues
		}
	}
	return "", ErrUnsupportedOperator
}

// The adapter quotes values with Go's %q; PromQL accepts Go string escapes,
// and matching its bytes keeps rendered queries identical.
func labelEq(l, v string) string         { return fmt.Sprintf("%s=%q", labelName(l), v) }
func labelNeq(l, v string) string        { return fmt.Sprintf("%s!=%q", labelName(l), v) }
func labelMatches(l, v string) string    { return fmt.Sprintf("%s=~%q", labelName(l), v) }
func labelNotMatches(l, v string) string { return fmt.Sprintf("%s!~%q", labelName(l), v) }

// labelName writes a label name as PromQL reads it inside braces. A
// Kubernetes label key such as app.kubernetes.io/name is a valid selector
// key but not a classic Prometheus label name: the adapter renders it bare
// and the query fails to parse, a server error for a valid request.
// Prometheus 3 reads any UTF-8 name in quotes, so such a key is quoted and
// matches exactly the series that carry that label (usually none, which is
// the honest answer).
func labelName(l string) string {
	if model.LabelName(l).IsValidLegacy() {
		return l
	}
	return strconv.Quote(l)
}
