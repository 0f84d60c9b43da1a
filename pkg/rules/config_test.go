package rules

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func loadFile(t *testing.T, name string) (*Config, error) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return Load(data)
}

var goodFixtures = []string{
	"adapter-default.yaml",
	"default-rules.yaml",
	"good-walkthrough.yaml",
	"good-external.yaml",
	"good-template.yaml",
}

func TestGoodConfigs(t *testing.T) {
	for _, name := range goodFixtures {
		t.Run(name, func(t *testing.T) {
			cfg, err := loadFile(t, name)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if errs := cfg.Validate(); len(errs) > 0 {
				t.Fatalf("Validate: %v", errs)
			}
			if _, err := Compile(cfg, fakeMapper{}); err != nil {
				t.Fatalf("Compile: %v", err)
			}
		})
	}
}

// TestFixturesListed keeps a new fixture from being silently untested.
func TestFixturesListed(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, f := range goodFixtures {
		listed[f] = true
	}
	for _, b := range badFixtures {
		listed[b.file] = true
	}
	for _, f := range files {
		if !listed[filepath.Base(f)] {
			t.Errorf("%s is in no good or bad fixture list", f)
		}
	}
}

func TestAdapterDefaultShape(t *testing.T) {
	cfg, err := loadFile(t, "adapter-default.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Rules) != 6 || cfg.ResourceRules == nil {
		t.Fatalf("got %d rules, resourceRules %v; want the adapter's 6 rules and resourceRules", len(cfg.Rules), cfg.ResourceRules)
	}
	if got, want := time.Duration(cfg.ResourceRules.Window), 5*time.Minute; got != want {
		t.Errorf("window = %v, want %v", got, want)
	}
	if got := cfg.Rules[0].Resources.Overrides["pod"].Resource; got != "pod" {
		t.Errorf("rules[0] pod override = %q, want pod", got)
	}
}

// TestBadConfigs is the expected-errors table: every problem of a file is
// reported, in order, with its field path.
var badFixtures = []struct {
	file    string
	loadErr string   // substring of the Load error, when loading fails
	errs    []string // exact Validate errors otherwise
}{
	{file: "bad-duplicate-key.yaml", loadErr: `key "seriesQuery" already set in map`},
	{file: "bad-unknown-field.yaml", loadErr: `unknown field "metricQuery"`},
	{file: "bad-regex.yaml", errs: []string{
		"rules[1].seriesFilters[0].isNot: error parsing regexp: missing closing ]: `[`",
		"rules[1].name.matches: error parsing regexp: missing closing ): `^(.*_total$`",
	}},
	{file: "bad-series-query.yaml", errs: []string{
		"rules[0].seriesQuery: 1:15: parse error: unexpected end of input inside braces",
		"rules[1].seriesQuery: is required",
	}},
	{file: "bad-filters.yaml", errs: []string{
		"rules[0].seriesFilters[0]: cannot have both an `is` (\"a\") and `isNot` (\"b\") expression in a single filter",
		"rules[0].seriesFilters[1]: must have either an `is` or `isNot` expression in a filter",
		`rules[0].name.as: is required when name.matches "^(.*)_(.*)$" has more than one capture group`,
	}},
	{file: "bad-templates.yaml", errs: []string{
		`rules[0].resources.template: label template "kube_<<.Group>>" must include <<.Resource>>`,
		`rules[0].resources.overrides[pod].resource: is required`,
		`rules[0].metricsQuery: rendered query "sum(series{namespace=\"default\",pod=~\"a|b\"}) by (pod": 1:52: parse error: unclosed left parenthesis`,
		`rules[1].resources.template: parse label template "<<.Resource": template: resource-label:1: unclosed action`,
		`rules[1].metricsQuery: template: metrics-query:1:18: executing "metrics-query" at <.Selector>: can't evaluate field Selector in type rules.QueryArgs`,
		`rules[2].resources: template or overrides is required`,
		`rules[2].metricsQuery: is required`,
		`externalRules[0].metricsQuery: empty query produced by metrics query template`,
	}},
	{file: "bad-resource-rules.yaml", errs: []string{
		"resourceRules.cpu.nodeQuery: is required",
		"resourceRules.cpu.containerLabel: is required",
		"resourceRules.window: must be a positive duration",
	}},
}

func TestBadConfigs(t *testing.T) {
	for _, tt := range badFixtures {
		t.Run(tt.file, func(t *testing.T) {
			cfg, err := loadFile(t, tt.file)
			if tt.loadErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.loadErr) {
					t.Fatalf("Load error = %v, want it to contain %q", err, tt.loadErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			var got []string
			for _, e := range cfg.Validate() {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tt.errs) {
				t.Errorf("Validate errors:\n got %q\nwant %q", got, tt.errs)
			}
			if _, err := Compile(cfg, fakeMapper{}); err == nil {
				t.Error("Compile succeeded on an invalid config")
			}
		})
	}
}

func TestCompileNormalizesOverrides(t *testing.T) {
	cfg := &Config{Rules: []DiscoveryRule{{
		SeriesQuery:  `{x!=""}`,
		Resources:    ResourceMapping{Overrides: map[string]GroupResource{"x": {Resource: "widgets"}}},
		MetricsQuery: "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
	}}}
	if errs := cfg.Validate(); len(errs) > 0 {
		t.Fatalf("Validate: %v", errs)
	}
	_, err := Compile(cfg, fakeMapper{})
	if err == nil || !strings.Contains(err.Error(), `rules[0]: normalize group-resource widgets of label "x"`) {
		t.Fatalf("Compile error = %v, want the unknown override reported", err)
	}
}

func TestDefaultConfigMatchesFixture(t *testing.T) {
	fixture, err := loadFile(t, "default-rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if got := DefaultConfig(0); !reflect.DeepEqual(got, fixture) {
		t.Errorf("DefaultConfig(0) differs from testdata/default-rules.yaml:\n got %+v\nwant %+v", got, fixture)
	}
	if errs := DefaultConfig(45 * time.Second).Validate(); len(errs) > 0 {
		t.Errorf("DefaultConfig(45s).Validate() = %v", errs)
	}
	if q := DefaultConfig(90 * time.Second).Rules[1].MetricsQuery; !strings.Contains(q, "[1m30s]") {
		t.Errorf("window not rendered as a PromQL duration: %s", q)
	}
}
