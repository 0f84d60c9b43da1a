package rules

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation"
)

// FuzzLoad feeds config files through everything that reads outside input:
// Load, Validate, Compile, naming, resource mapping and rendering. None may
// panic, and a config that validates must either compile or fail on a
// resource the mapper does not know.
//
// Run it with a short minimization budget: the default 60 s per new input
// stalls the worker on a loaded machine, and the dependency graph
// (promql/parser, apimachinery) makes new coverage frequent:
//
//	go test -run '^$' -fuzz FuzzLoad -fuzztime 30s -fuzzminimizetime 50x ./pkg/rules/
func FuzzLoad(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	series := labels.FromStrings("__name__", "http_requests_total", "namespace", "default", "pod", "a", "service", "s")
	sel := k8slabels.SelectorFromSet(k8slabels.Set{"verb": "GET"})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Load(data)
		if err != nil {
			return
		}
		if errs := cfg.Validate(); len(errs) > 0 {
			return
		}
		rs, err := Compile(cfg, fakeMapper{})
		if err != nil {
			return
		}
		for _, r := range append(rs.Custom, rs.External...) {
			if r.Selects(series) {
				_, _ = r.MetricNameForSeries("http_requests_total")
			}
			res, _ := r.ResourcesForSeries(series)
			for _, gr := range res {
				_, _ = r.QueryForSeries("http_requests_total", gr, "default", sel, "a", "b")
			}
			_, _ = r.QueryForExternalSeries("http_requests_total", "default", sel)
		}
		for _, q := range []*ResourceQuery{rs.CPU, rs.Memory} {
			if q != nil {
				_, _ = q.ContainerQuery("default", "a")
				_, _ = q.NodeQuery("n")
			}
		}
	})
}

// FuzzSelectorQuery renders every selector the API server would accept
// (labelSelector grammar, as custom-metrics-apiserver parses
// metricLabelSelector) through the default rules and the adapter's default
// config, for custom and external metrics. Each must give either a query
// that parses or one of the errors the provider answers as a 400; a query
// that does not parse would reach the engine and come back as a server
// error for a valid request (app.kubernetes.io/name=web did, before label
// names were quoted).
//
//	go test -run '^$' -fuzz FuzzSelectorQuery -fuzztime 60s ./pkg/rules/
func FuzzSelectorQuery(f *testing.F) {
	for _, s := range []string{
		"", "verb=GET", "app.kubernetes.io/name=web", "a!=b", "a in (x,y)", "a notin (x)",
		"a", "!a", "example.com/tier in (a.b,c-d)", "x==y,z!=w", "a in (.)", "a>1", "a<2",
	} {
		f.Add(s, "default", "pod-0")
	}
	var compiled []*Rules
	for _, file := range []string{"testdata/adapter-default.yaml", "testdata/default-rules.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		cfg, err := Load(data)
		if err != nil {
			f.Fatal(err)
		}
		rs, err := Compile(cfg, fakeMapper{})
		if err != nil {
			f.Fatal(err)
		}
		compiled = append(compiled, rs)
	}
	rs, err := Compile(DefaultConfig(0), fakeMapper{})
	if err != nil {
		f.Fatal(err)
	}
	compiled = append(compiled, rs)
	p := parser.NewParser(storage.ParserOptions())
	refused := []error{ErrLabelNotSpecified, ErrUnsupportedOperator, ErrMalformedQuery, ErrQueryUnsupportedValues}
	check := func(t *testing.T, q string, err error) {
		t.Helper()
		for _, r := range refused {
			if errors.Is(err, r) {
				return
			}
		}
		if err != nil {
			t.Fatalf("render: %v", err)
		}
		if _, err := p.ParseExpr(q); err != nil {
			t.Fatalf("rendered query does not parse: %q: %v", q, err)
		}
	}
	pods := schema.GroupResource{Resource: "pods"}
	f.Fuzz(func(t *testing.T, selector, namespace, name string) {
		sel, err := k8slabels.Parse(selector)
		if err != nil {
			return
		}
		// Objects are named by the API server's rules: several names are
		// joined into a regexp alternation, which DNS subdomain names
		// cannot break.
		if len(validation.IsDNS1123Label(namespace)) > 0 || len(validation.IsDNS1123Subdomain(name)) > 0 {
			return
		}
		for _, rs := range compiled {
			for _, r := range rs.Custom {
				q, err := r.QueryForSeries("http_requests_total", pods, namespace, sel, name)
				check(t, q, err)
				q, err = r.QueryForSeries("http_requests_total", pods, namespace, sel, name, name+"-b")
				check(t, q, err)
			}
			for _, r := range rs.External {
				q, err := r.QueryForExternalSeries("http_requests_total", namespace, sel)
				check(t, q, err)
			}
		}
	})
}
