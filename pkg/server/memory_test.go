package server

import (
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"testing"
)

// TestMemoryApply: the GC target while starting, then --gogc, or the GOGC
// environment variable unless --gogc was given; GOMEMLIMIT left alone when
// the environment sets it.
func TestMemoryApply(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
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
	for _, bad := range []MemoryOptions{{Ratio: 0, GOGC: 50}, {Ratio: 1.5, GOGC: 50}, {Ratio: 0.9, GOGC: 0}} {
		if len(bad.validate()) == 0 {
			t.Errorf("%+v accepted", bad)
		}
	}
}
