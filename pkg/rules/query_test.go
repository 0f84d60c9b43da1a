package rules

import (
	"errors"
	"strings"
	"testing"

	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	pods       = schema.GroupResource{Resource: "pods"}
	namespaces = namespaceResource
)

func selector(t *testing.T, s string) k8slabels.Selector {
	t.Helper()
	sel, err := k8slabels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel
}

// TestQueryForSeries compares rendered PromQL with what prometheus-adapter
// renders for the same request: selector matchers (sorted by key), then
// namespace, then the resource label; a single name with =, several with =~
// joined by "|"; values quoted with Go's %q.
func TestQueryForSeries(t *testing.T) {
	defaults := mustCompile(t, DefaultConfig(0))
	walk := mustLoadCompile(t, "good-walkthrough.yaml")
	tmpl := mustLoadCompile(t, "good-template.yaml")
	tests := []struct {
		name      string
		rule      *Rule
		series    string
		gr        schema.GroupResource
		namespace string
		sel       string
		names     []string
		want      string
	}{
		{"default counter, two pods", defaults.Custom[1], "http_requests_total", pods, "default", "", []string{"a", "b"},
			`sum(adaptive_rate(http_requests_total{namespace="default",pod=~"a|b"}[2m])) by (pod)`},
		{"default counter, one pod", defaults.Custom[1], "http_requests_total", pods, "default", "", []string{"a"},
			`sum(adaptive_rate(http_requests_total{namespace="default",pod="a"}[2m])) by (pod)`},
		{"default counter per namespace", defaults.Custom[1], "http_requests_total", namespaces, "", "", []string{"default"},
			`sum(adaptive_rate(http_requests_total{namespace="default"}[2m])) by (namespace)`},
		{"default seconds counter", defaults.Custom[2], "process_cpu_seconds_total", pods, "kube-system", "", []string{"x"},
			`sum(adaptive_rate(process_cpu_seconds_total{namespace="kube-system",pod="x"}[2m])) by (pod)`},
		{"default gauge", defaults.Custom[0], "queue_length", pods, "default", "", []string{"a"},
			`sum(queue_length{namespace="default",pod="a"}) by (pod)`},
		{"metric selector first, sorted by key", defaults.Custom[1], "http_requests_total", pods, "default", "verb=GET,code in (201,200)", []string{"a", "b"},
			`sum(adaptive_rate(http_requests_total{code=~"200|201",verb="GET",namespace="default",pod=~"a|b"}[2m])) by (pod)`},
		{"selector operators", defaults.Custom[0], "g", pods, "n", "a,!b,c!=1,d notin (x),e notin (x,y),f in (z)", []string{"p"},
			`sum(g{a!="",b="",c!="1",d!~"x",e!~"x|y",f=~"z",namespace="n",pod="p"}) by (pod)`},
		{"quoting", defaults.Custom[0], "g", pods, "n", "", []string{`a"b\c`},
			`sum(g{namespace="n",pod="a\"b\\c"}) by (pod)`},
		{"walkthrough", walk.Custom[0], "http_requests_total", pods, "somens", "", []string{"pod1", "pod2"},
			`sum(rate(http_requests_total{kubernetes_namespace="somens",kubernetes_pod_name=~"pod1|pod2"}[2m])) by (kubernetes_pod_name)`},
		{"override with group, GroupBySlice", tmpl.Custom[0], "app_latency", schema.GroupResource{Group: "apps", Resource: "deployments"}, "a", "", []string{"web"},
			`max(app_latency{kube_namespace="a",microservice="web"}) by (microservice)`},
		{"template label", tmpl.Custom[0], "app_latency", schema.GroupResource{Group: "networking.k8s.io", Resource: "ingresses"}, "a", "", []string{"i"},
			`max(app_latency{kube_namespace="a",kube_networking_k8s_io_ingress="i"}) by (kube_networking_k8s_io_ingress)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sel k8slabels.Selector
			if tt.sel != "" {
				sel = selector(t, tt.sel)
			}
			got, err := tt.rule.QueryForSeries(tt.series, tt.gr, tt.namespace, sel, tt.names...)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("query\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestQueryForSeriesErrors(t *testing.T) {
	defaults := mustCompile(t, DefaultConfig(0))
	r := defaults.Custom[0]
	if _, err := r.QueryForSeries("g", pods, "n", selector(t, "x>1"), "p"); !errors.Is(err, ErrUnsupportedOperator) {
		t.Errorf("x>1: error = %v, want ErrUnsupportedOperator", err)
	}
	if _, err := r.QueryForSeries("g", schema.GroupResource{Resource: "services"}, "n", nil, "s"); err == nil ||
		!strings.Contains(err.Error(), "no generic resource label form specified") {
		t.Errorf("services: error = %v, want no label for an unmapped resource", err)
	}
	empty, err := NewRule(DiscoveryRule{SeriesQuery: "x", Resources: ResourceMapping{Template: "<<.Resource>>"},
		MetricsQuery: "<<if false>>x<<end>>"}, fakeMapper{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := empty.QueryForSeries("x", pods, "", nil, "p"); err == nil || !strings.Contains(err.Error(), "empty query") {
		t.Errorf("empty render: error = %v", err)
	}
}

func TestPartExprMalformed(t *testing.T) {
	tests := []struct {
		part queryPart
		err  error
	}{
		{queryPart{label: "", values: []string{"a"}}, ErrLabelNotSpecified},
		{queryPart{label: "a", op: "="}, ErrMalformedQuery},
		{queryPart{label: "a", op: "exists", values: []string{"x"}}, ErrQueryUnsupportedValues},
		{queryPart{label: "a", op: "!", values: []string{"x", "y"}}, ErrQueryUnsupportedValues},
		{queryPart{label: "a", op: "gt", values: []string{"1"}}, ErrUnsupportedOperator},
	}
	for _, tt := range tests {
		if _, _, err := processParts([]queryPart{tt.part}); !errors.Is(err, tt.err) {
			t.Errorf("%+v: error = %v, want %v", tt.part, err, tt.err)
		}
	}
}

func TestQueryForExternalSeries(t *testing.T) {
	ext := mustLoadCompile(t, "good-external.yaml")
	tests := []struct {
		name, series, namespace, sel, want string
		rule                               *Rule
	}{
		{"namespaced", "queue_consumer_lag", "default", "name=q1", `sum(queue_consumer_lag{name="q1",namespace="default"}) by (name)`, ext.External[0]},
		{"no namespace asked", "queue_consumer_lag", "", "name=q1", `sum(queue_consumer_lag{name="q1"}) by (name)`, ext.External[0]},
		{"namespaced: false ignores the namespace", "queue_depth", "default", "topic=t", `sum(queue_depth{topic="t"}) by (name)`, ext.External[1]},
		{"namespaced: false, empty selector", "queue_depth", "default", "", `sum(queue_depth{}) by (name)`, ext.External[1]},
		// LabelValuesByName joins several values with "|".
		{"LabelValuesByName", "kafka_consumer_lag", "default", "topic in (a,b)", `sum(kafka_consumer_lag{topic=~"a|b"})`, ext.External[2]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var sel k8slabels.Selector
			if tt.sel != "" {
				sel = selector(t, tt.sel)
			}
			got, err := tt.rule.QueryForExternalSeries(tt.series, tt.namespace, sel)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("query\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

// TestExternalNamespacedWithoutMapping: the adapter's sample external rule
// has no resources, so with the default namespaced: true a request from a
// namespace cannot find the namespace label and fails.
func TestExternalNamespacedWithoutMapping(t *testing.T) {
	r, err := NewRule(DiscoveryRule{SeriesQuery: `{__name__="queue_consumer_lag"}`,
		MetricsQuery: "sum(<<.Series>>{<<.LabelMatchers>>}) by (name)"}, fakeMapper{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.QueryForExternalSeries("queue_consumer_lag", "default", nil); err == nil {
		t.Error("want an error: no label for the namespace resource")
	}
}

func TestResourceQueries(t *testing.T) {
	rs := mustLoadCompile(t, "adapter-default.yaml")
	tests := []struct {
		name string
		got  func() (string, error)
		want string
	}{
		{"cpu containers", func() (string, error) { return rs.CPU.ContainerQuery("default", "a", "b") },
			"sum by (pod,container) (\n  irate (\n      container_cpu_usage_seconds_total{namespace=\"default\",pod=~\"a|b\",container!=\"\",pod!=\"\"}[4m]\n  )\n)\n"},
		{"cpu nodes", func() (string, error) { return rs.CPU.NodeQuery("n1") },
			"sum by (node) (\n  irate(\n      node_cpu_usage_seconds_total{node=\"n1\"}[4m]\n  )\n)\n"},
		{"memory containers", func() (string, error) { return rs.Memory.ContainerQuery("ns", "p") },
			"sum by (pod,container) (\n  container_memory_working_set_bytes{namespace=\"ns\",pod=\"p\",container!=\"\",pod!=\"\"}\n)\n"},
		{"memory nodes", func() (string, error) { return rs.Memory.NodeQuery("n1", "n2") },
			"sum by (node) (\n  node_memory_working_set_bytes{node=~\"n1|n2\"}\n)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.got()
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("query\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	if rs.Window.String() != "5m0s" {
		t.Errorf("window = %v", rs.Window)
	}
}

func TestRenderLimit(t *testing.T) {
	q, err := NewQueryTemplate(`<<range .GroupBySlice>><<.>><<end>>`)
	if err != nil {
		t.Fatal(err)
	}
	big := make([]string, 0, 2000)
	for range 2000 {
		big = append(big, strings.Repeat("x", 64))
	}
	if _, err := q.Render(QueryArgs{GroupBySlice: big}); !errors.Is(err, errRenderTooLarge) {
		t.Fatalf("error = %v, want errRenderTooLarge", err)
	}
}
