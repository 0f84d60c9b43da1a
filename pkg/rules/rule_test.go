package rules

import (
	"reflect"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/model/labels"
)

func mustCompile(t *testing.T, cfg *Config) *Rules {
	t.Helper()
	r, err := Compile(cfg, fakeMapper{})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return r
}

func mustLoadCompile(t *testing.T, name string) *Rules {
	t.Helper()
	cfg, err := loadFile(t, name)
	if err != nil {
		t.Fatal(err)
	}
	return mustCompile(t, cfg)
}

func TestMetricNameForSeries(t *testing.T) {
	tests := []struct {
		name, matches, as, series, want, err string
	}{
		{name: "defaults keep the name", series: "http_requests_total", want: "http_requests_total"},
		{name: "one group defaults to $1", matches: "^(.*)_total$", series: "http_requests_total", want: "http_requests"},
		{name: "named group counts", matches: "^(?P<base>.*)_total$", series: "a_total", want: "a"},
		{name: "no group defaults to $0", matches: "_total$", series: "a_total", want: "_total"},
		{name: "explicit as", matches: "^(.*)_total$", as: "${1}_per_second", series: "http_requests_total", want: "http_requests_per_second"},
		{name: "two groups with as", matches: "^(.*)_(.*)$", as: "${2}_$1", series: "a_b", want: "b_a"},
		// Go's Expand reads "$2_" as a group named "2_", which is empty.
		{name: "greedy group name", matches: "^(.*)_(.*)$", as: "$2_$1", series: "a_b", want: "a"},
		// The walkthrough's pattern is unanchored at the end: only the
		// expansion is returned, never the unmatched tail.
		{name: "unanchored", matches: "^(.*)_total", as: "${1}_per_second", series: "x_total_y", want: "x_per_second"},
		{name: "cadvisor seconds", matches: "^container_(.*)_seconds_total$", series: "container_cpu_usage_seconds_total", want: "cpu_usage"},
		{name: "no match", matches: "^(.*)_total$", series: "up", err: `series name "up" did not match expected pattern "^(.*)_total$"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewRule(DiscoveryRule{
				SeriesQuery:  `{namespace!=""}`,
				Name:         NameMapping{Matches: tt.matches, As: tt.as},
				Resources:    ResourceMapping{Template: "<<.Resource>>"},
				MetricsQuery: "<<.Series>>",
			}, fakeMapper{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.MetricNameForSeries(tt.series)
			if tt.err != "" {
				if err == nil || err.Error() != tt.err {
					t.Fatalf("error = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("MetricNameForSeries(%q) = %q, %v; want %q", tt.series, got, err, tt.want)
			}
		})
	}
}

func TestNewRuleNameAsRequired(t *testing.T) {
	_, err := NewRule(DiscoveryRule{SeriesQuery: "x", Name: NameMapping{Matches: "(a)(b)"}, MetricsQuery: "x"}, fakeMapper{})
	if err == nil || !strings.Contains(err.Error(), "must specify an 'as' value") {
		t.Fatalf("error = %v, want 'as' required", err)
	}
}

// TestAdapterDefaultRulesPartition checks which of the adapter's default
// rules claim a pod series, and the API name each gives: the filters make
// the rules mutually exclusive, which is what the adapter relies on.
func TestAdapterDefaultRulesPartition(t *testing.T) {
	rs := mustLoadCompile(t, "adapter-default.yaml")
	tests := []struct {
		series string
		want   map[int]string // rule index → API name
	}{
		{"container_cpu_usage_seconds_total", map[int]string{0: "cpu_usage"}},
		{"container_network_receive_bytes_total", map[int]string{1: "network_receive_bytes"}},
		{"container_memory_working_set_bytes", map[int]string{2: "memory_working_set_bytes"}},
		{"http_requests_total", map[int]string{4: "http_requests"}},
		{"process_cpu_seconds_total", map[int]string{5: "process_cpu"}},
		{"queue_length", map[int]string{3: "queue_length"}},
		// Rule 4's isNot is unanchored, so a name merely containing
		// _seconds_total is left to rule 5, which does not match it either.
		{"a_seconds_total_b_total", map[int]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.series, func(t *testing.T) {
			series := labels.FromStrings("__name__", tt.series, "container", "c", "namespace", "ns", "pod", "p")
			got := map[int]string{}
			for i, r := range rs.Custom {
				if !r.Selects(series) {
					continue
				}
				name, err := r.MetricNameForSeries(tt.series)
				if err != nil {
					t.Fatalf("rule %d accepted %q but cannot name it: %v", i, tt.series, err)
				}
				got[i] = name
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("rules claiming %q = %v, want %v", tt.series, got, tt.want)
			}
		})
	}
}

func TestFilterSeries(t *testing.T) {
	rs := mustLoadCompile(t, "good-template.yaml")
	in := []labels.Labels{
		labels.FromStrings("__name__", "app_latency", "kube_namespace", "a"),
		labels.FromStrings("__name__", "app_latency_bucket", "kube_namespace", "a"),
		labels.FromStrings("__name__", "other_app_x", "kube_namespace", "a"),
	}
	got := rs.Custom[0].FilterSeries(in)
	if len(got) != 1 || got[0].Get("__name__") != "app_latency" {
		t.Fatalf("FilterSeries kept %v, want only app_latency", got)
	}
	if len(in) != 3 {
		t.Fatal("FilterSeries modified its input")
	}
}

func TestSeriesMatchers(t *testing.T) {
	rs := mustCompile(t, DefaultConfig(0))
	ms := rs.Custom[0].SeriesMatchers()
	var got []string
	for _, m := range ms {
		got = append(got, m.String())
	}
	want := []string{`namespace!=""`, `pod!=""`, `__name__!~"^container_.*"`}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SeriesMatchers = %q, want %q", got, want)
	}
	if q := rs.Custom[0].SeriesQuery(); q != defaultSeriesQuery {
		t.Errorf("SeriesQuery = %q", q)
	}
}
