package scrape

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
)

func TestSelfJob(t *testing.T) {
	doc, err := SelfJobYAML("127.0.0.1:4321", "s3cret", "gw-0", 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(slog.New(slog.DiscardHandler), doc)
	if err != nil {
		t.Fatalf("config.Load refused the self job: %v\n%s", err, doc)
	}
	scs, err := cfg.GetScrapeConfigs()
	if err != nil || len(scs) != 1 {
		t.Fatalf("scrape configs: %v, %d", err, len(scs))
	}
	sc := scs[0]
	if sc.HTTPClientConfig.Authorization == nil || string(sc.HTTPClientConfig.Authorization.Credentials) != "s3cret" {
		t.Errorf("self job authorization: %+v", sc.HTTPClientConfig.Authorization)
	}
	if sc.JobName != SelfJobName || time.Duration(sc.ScrapeInterval) != 15*time.Second || time.Duration(sc.ScrapeTimeout) != 10*time.Second {
		t.Errorf("job %q interval %v timeout %v", sc.JobName, sc.ScrapeInterval, sc.ScrapeTimeout)
	}
	for _, tc := range []struct {
		name string
		keep bool
	}{
		{"metrics_gateway_scrape_failures_total", true},
		{"metrics_gateway_head_series", true},
		{"apiserver_request_duration_seconds_bucket", true},
		{"metrics_gateway_query_api_request_duration_seconds_count", true},
		{"process_resident_memory_bytes", true},
		// Per-target families duplicate the scrape loop's own series.
		{"metrics_gateway_scrape_target_up", false},
		{"metrics_gateway_scrape_errors_total", false},
		{"go_gc_duration_seconds", false},
		{"apiserver_request_duration_seconds_bucket_extra", false},
	} {
		kept := relabel.ProcessBuilder(labels.NewBuilder(labels.FromStrings("__name__", tc.name)), sc.MetricRelabelConfigs...)
		if kept != tc.keep {
			t.Errorf("%s kept = %v, want %v", tc.name, kept, tc.keep)
		}
	}
	if sc.EnableCompression {
		t.Error("the self job asks for gzip over loopback")
	}
	keep := SelfFamilyFilter()
	for family, want := range map[string]bool{
		"apiserver_request_duration_seconds":                 true,
		"metrics_gateway_query_api_request_duration_seconds": true,
		"process_cpu_seconds_total":                          true,
		"metrics_gateway_scrape_failures_total":              true,
		"metrics_gateway_scrape_target_up":                   false,
		"go_gc_duration_seconds":                             false,
		"apiserver_request_duration":                         false,
	} {
		if got := keep(family); got != want {
			t.Errorf("family %s served to the self job: %v, want %v", family, got, want)
		}
	}
	for _, bad := range [][4]any{{"", "t", "gw", time.Second}, {"127.0.0.1:1", "", "gw", time.Second}, {"127.0.0.1:1", "t", "", time.Second}, {"127.0.0.1:1", "t", "gw", time.Duration(0)}} {
		if _, err := SelfJobYAML(bad[0].(string), bad[1].(string), bad[2].(string), bad[3].(time.Duration)); err == nil {
			t.Errorf("SelfJobYAML%v: no error", bad)
		}
	}
}
