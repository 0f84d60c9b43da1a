package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenDir is where the main module's scrape tests read the fixtures.
const (
	goldenDir  = "../../../pkg/scrape/testdata/kubelet"
	regenerate = "regenerate: cd test && go run ./cmd/kubelet-fixtures -out ../pkg/scrape/testdata/kubelet"
)

// TestGoldenUpToDate fails when the committed fixtures differ from what the pinned
// kubelet code produces, e.g. after a k8s.io/kubernetes bump or a scenario edit.
func TestGoldenUpToDate(t *testing.T) {
	dir := t.TempDir()
	if err := run([]string{"-out", dir}, io.Discard); err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, name := range []string{"round1.txt", "round2.txt", "README.md"} {
		t.Run(name, func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(filepath.Join(goldenDir, name))
			if err != nil {
				t.Fatalf("%v; %s", err, regenerate)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale; %s", name, regenerate)
			}
		})
	}
}

// TestScenarioShape guards the cases the fixtures exist for, so a scenario edit cannot
// silently drop one.
func TestScenarioShape(t *testing.T) {
	dir := t.TempDir()
	if err := run([]string{"-out", dir}, io.Discard); err != nil {
		t.Fatalf("run: %v", err)
	}
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	r1, r2 := read("round1.txt"), read("round2.txt")
	tests := []struct {
		name, body, line string
		want             bool
	}{
		{"web-1 app cpu at t0", r1, `container_cpu_usage_seconds_total{container="app",namespace="default",pod="web-1"} 10 1790000000000`, true},
		{"web-1 app cpu at t0+15s", r2, `container_cpu_usage_seconds_total{container="app",namespace="default",pod="web-1"} 10.75 1790000015000`, true},
		{"restart-1 before restart", r1, `container_cpu_usage_seconds_total{container="app",namespace="default",pod="restart-1"} 50 1790000000000`, true},
		{"restart-1 after restart", r2, `container_cpu_usage_seconds_total{container="app",namespace="default",pod="restart-1"} 0.3 1790000015000`, true},
		{"restart-1 new start time", r2, `container_start_time_seconds{container="app",namespace="default",pod="restart-1"} 1.790000005e+09`, true},
		{"nodata-1 absent in round 1", r1, `pod="nodata-1"`, false},
		{"nodata-1 app has cpu", r2, `container_cpu_usage_seconds_total{container="app",namespace="default",pod="nodata-1"} 0.12 1790000015000`, true},
		{"nodata-1 starting has no cpu", r2, `container_cpu_usage_seconds_total{container="starting"`, false},
		{"nodata-1 starting has no memory", r2, `container_memory_working_set_bytes{container="starting"`, false},
		{"deprecated scrape_error hidden as in v1.37", r2, "\nscrape_error ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Contains(tt.body, tt.line); got != tt.want {
				t.Errorf("contains %q = %v, want %v", tt.line, got, tt.want)
			}
		})
	}
}
