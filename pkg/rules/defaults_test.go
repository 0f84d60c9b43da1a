package rules

import (
	"reflect"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// TestDefaultRules follows scraped pod series through the zero-config
// rules (from the YAML fixture, which equals DefaultConfig(0)): which rule
// claims each, its API name, its resources, and the PromQL for two pods and
// for the namespace.
func TestDefaultRules(t *testing.T) {
	rs := mustLoadCompile(t, "default-rules.yaml")
	tests := []struct {
		series    string
		wantName  string // "" when no rule may claim the series
		podsQuery string
		nsQuery   string
	}{
		{"http_requests_total", "http_requests",
			`sum(adaptive_rate(http_requests_total{namespace="default",pod=~"a|b"}[2m])) by (pod)`,
			`sum(adaptive_rate(http_requests_total{namespace="default"}[2m])) by (namespace)`},
		{"process_cpu_seconds_total", "process_cpu",
			`sum(adaptive_rate(process_cpu_seconds_total{namespace="default",pod=~"a|b"}[2m])) by (pod)`,
			`sum(adaptive_rate(process_cpu_seconds_total{namespace="default"}[2m])) by (namespace)`},
		{"queue_length", "queue_length",
			`sum(queue_length{namespace="default",pod=~"a|b"}) by (pod)`,
			`sum(queue_length{namespace="default"}) by (namespace)`},
		{"container_cpu_usage_seconds_total", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.series, func(t *testing.T) {
			series := labels.FromStrings("__name__", tt.series, "instance", "10.0.0.1:8080", "namespace", "default", "pod", "a")
			var claimed []*Rule
			for _, r := range rs.Custom {
				if r.Selects(series) {
					claimed = append(claimed, r)
				}
			}
			if tt.wantName == "" {
				if len(claimed) != 0 {
					t.Fatalf("%d rules claim %s, want none", len(claimed), tt.series)
				}
				return
			}
			if len(claimed) != 1 {
				t.Fatalf("%d rules claim %s, want exactly one", len(claimed), tt.series)
			}
			r := claimed[0]
			if name, err := r.MetricNameForSeries(tt.series); err != nil || name != tt.wantName {
				t.Errorf("name = %q, %v; want %q", name, err, tt.wantName)
			}
			res, namespaced := r.ResourcesForSeries(series)
			if want := []schema.GroupResource{namespaceResource, {Resource: "pods"}}; !reflect.DeepEqual(res, want) || !namespaced {
				t.Errorf("resources = %v, %v; want %v, true", res, namespaced, want)
			}
			if q, err := r.QueryForSeries(tt.series, schema.GroupResource{Resource: "pods"}, "default", nil, "a", "b"); err != nil || q != tt.podsQuery {
				t.Errorf("pods query = %s, %v\nwant %s", q, err, tt.podsQuery)
			}
			if q, err := r.QueryForSeries(tt.series, namespaceResource, "", nil, "default"); err != nil || q != tt.nsQuery {
				t.Errorf("namespaces query = %s, %v\nwant %s", q, err, tt.nsQuery)
			}
		})
	}
}

func TestDefaultRulesNeedPodLabel(t *testing.T) {
	rs := mustCompile(t, DefaultConfig(0))
	series := labels.FromStrings("__name__", "up", "namespace", "default")
	for i, r := range rs.Custom {
		if r.Selects(series) {
			t.Errorf("rule %d selects a series without a pod label", i)
		}
	}
}
