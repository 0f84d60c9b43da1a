package rules

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	k8slabels "k8s.io/apimachinery/pkg/labels"
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
//	go test -run '^$' -fuzz FuzzLoad -fuzztime 30s -fuzzminimizetime 50x ./pkg/custom/rules/
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
