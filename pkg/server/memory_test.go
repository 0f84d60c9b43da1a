package server

import (
	"bytes"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
)

// TestMemoryApply: the GC target while starting, then --gogc, or the GOGC
// environment variable unless --gogc was given; GOMEMLIMIT left alone when
// the environment sets it.
func TestMemoryApply(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer gcHeadroom.enable(0, 0) // started() enables it for the process
	defer gcHeadroom.keepFloor(0, 0)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		name     string
		env      string
		flag     int
		flagSet  bool
		startup  int
		steady   int
		envAfter string
	}{
		{"default", "", DefaultGOGC, false, startupGOGC, DefaultGOGC, ""},
		{"flag", "", 150, true, startupGOGC, 150, ""},
		{"flag below the startup target", "", 10, true, 10, 10, ""},
		{"environment", "200", DefaultGOGC, false, startupGOGC, 200, "200"},
		{"flag beats environment", "200", 30, true, startupGOGC, 30, "30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("GOGC", tc.env)
			if tc.env == "" {
				os.Unsetenv("GOGC")
			}
			// The runtime reads GOGC at start only: set what it would have read.
			if tc.env != "" {
				debug.SetGCPercent(200)
			} else {
				debug.SetGCPercent(100)
			}
			t.Setenv("GOMEMLIMIT", "123MiB")
			m := MemoryOptions{AutoGoMemLimit: true, Ratio: 0.9, GOGC: tc.flag}
			started := m.Apply(tc.flagSet, logger)
			if got := debug.SetGCPercent(-1); got != tc.startup {
				t.Errorf("while starting GOGC = %d, want %d", got, tc.startup)
			}
			debug.SetGCPercent(tc.startup)
			started()
			if got := debug.SetGCPercent(-1); got != tc.steady {
				t.Errorf("after starting GOGC = %d, want %d", got, tc.steady)
			}
			if tc.envAfter != "" && os.Getenv("GOGC") != tc.envAfter {
				t.Errorf("GOGC environment %q, want %q", os.Getenv("GOGC"), tc.envAfter)
			}
		})
	}
	for _, bad := range []MemoryOptions{{Ratio: 0, GOGC: 50}, {Ratio: 1.5, GOGC: 50}, {Ratio: 0.9, GOGC: 0}, {Ratio: 0.9, GOGC: 50, ListGCHeadroom: "lots"}, {Ratio: 0.9, GOGC: 50, ListGCHeadroom: "-1MiB"}} {
		if len(bad.validate()) == 0 {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestFitMemoryLimit: under a memory limit smaller than the defaults'
// budget, the defaults not given explicitly are lowered by one factor
// until it fits, none below its floor; explicit values are kept, with a
// warning when the budget then exceeds the limit.
func TestFitMemoryLimit(t *testing.T) {
	explicitSeries := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(explicitSeries, []byte("apiVersion: metrics-gateway.io/v1alpha1\nkind: GatewayConfig\nstorage:\n  maxHeadSeries: 200000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const mi = 1 << 20
	defaults := memorySizes{maxHeadSeries: 200_000, queryMaxSamples: 1_400_000, podBytesInFlight: 32 * mi}
	for _, tc := range []struct {
		name   string
		limit  int64
		args   []string
		config string
		want   memorySizes
		log    string
	}{
		{"no limit", math.MaxInt64, nil, "", defaults, `msg="Memory budget" budgetMiB=913 memoryLimit=none`},
		{"1Gi", 1 << 30, nil, "", defaults, `msg="Memory budget"`},
		{"the shipped pod's GOMEMLIMIT, 0.9 of 1Gi", 966367641, nil, "", defaults, `msg="Memory budget"`},
		{"512Mi: the defaults lowered by one factor", 512 * mi, nil, "", memorySizes{77867, 545075, 13064073},
			`msg="Lowered the defaults that size memory to fit the memory limit" budgetMiB=511 memoryLimit=512MiB storage.maxHeadSeries="77867 (default 200000)" --query-max-samples="545075 (default 1400000)" --pod-scrape-max-bytes-in-flight="13064073 (default 33554432)"`},
		{"512Mi, --query-max-samples given", 512 * mi, []string{"--query-max-samples=2000000"}, "", memorySizes{10_000, 2_000_000, 10 * mi},
			`level=WARN msg="The memory budget exceeds the memory limit`},
		{"512Mi, storage.maxHeadSeries in the file", 512 * mi, nil, explicitSeries, memorySizes{200_000, 100_000, 10 * mi},
			`explicit=[storage.maxHeadSeries]`},
		{"1Gi, a larger --pod-scrape-max-bytes-in-flight given", 1 << 30, []string{"--pod-scrape-max-bytes-in-flight=128MiB"}, "", memorySizes{136770, 957395, 128 * mi},
			`--pod-scrape-max-bytes-in-flight=134217728`},
		{"256Mi: every default at its floor", 256 * mi, nil, "", memorySizes{minMaxHeadSeries, minQueryMaxSamples, 10 * mi}, `level=WARN`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions()
			named := o.Flags()
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			for _, n := range named.Order {
				fs.AddFlagSet(named.FlagSet(n))
			}
			if err := fs.Parse(tc.args); err != nil {
				t.Fatal(err)
			}
			gw, errs := scrape.LoadConfigFile(tc.config)
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			var logs bytes.Buffer
			got, err := o.fitMemoryLimit(tc.limit, gw, slog.New(slog.NewTextHandler(&logs, nil)))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if b := o.budget(got); b > tc.limit && !strings.Contains(logs.String(), "WARN") {
				t.Errorf("budget %d over the limit %d without a warning", b, tc.limit)
			}
			if n := strings.Count(logs.String(), "\n"); n != 1 || !strings.Contains(logs.String(), tc.log) {
				t.Errorf("%d log lines, want one with %q:\n%s", n, tc.log, logs.String())
			}
		})
	}
}
