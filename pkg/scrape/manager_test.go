package scrape

import (
	"strings"
	"testing"
)

func TestLoadConfig(t *testing.T) {
	job := func(name string) string {
		return "scrape_configs:\n- job_name: " + name + "\n  static_configs: [{targets: ['127.0.0.1:9']}]\n"
	}
	for _, tc := range []struct {
		name, want string
		docs       []string
	}{
		{"merges documents", "", []string{job("a"), job("b")}},
		{"duplicate job", "multiple scrape configs with job name", []string{job("a"), job("a")}},
		{"unknown key", `unsupported key "rule_files"`, []string{"rule_files: []\n"}},
		{"not yaml", "scrape config document 0", []string{"scrape_configs: [\n"}},
		{"bad job", "load scrape configs", []string{"scrape_configs:\n- job_name: x\n  scrape_interval: banana\n"}},
		{"unknown field in job", "load scrape configs", []string{"scrape_configs:\n- job_name: x\n  no_such_field: 1\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadConfig(nil, tc.docs...)
			if tc.want == "" {
				if err != nil || len(cfg.ScrapeConfigs) != len(tc.docs) {
					t.Fatalf("%v %v", err, cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}
