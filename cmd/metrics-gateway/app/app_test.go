package app

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/metrics-gateway/metrics-gateway/pkg/server"
)

func TestRun(t *testing.T) {
	checkRunCases(t, []runCase{
		{"help", []string{"--help"}, "", "--kubelet-preferred-address-types"},
		{"unknown flag", []string{"--no-such-flag"}, "unknown flag", ""},
		{"stray argument", []string{"serve"}, "unexpected arguments", ""},
		{"every bad value reported", []string{"--metric-resolution=0s", "--kubelet-port=0", "--storage-retention=1m"}, "kubelet-port 0 out of range", ""},
	})
	var out bytes.Buffer
	err := Run(context.Background(), []string{"--metric-resolution=0s", "--kubelet-port=0", "--storage-retention=1m"}, &out, &out)
	for _, w := range []string{"metric-resolution", "kubelet-port", "storage-retention"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %q", err, w)
		}
	}
}

// TestVersion: --version prints the version the build stamped (make build's
// -ldflags -X), exactly, and nothing else, and starts nothing.
func TestVersion(t *testing.T) {
	defer func(v string) { server.Version = v }(server.Version)
	server.Version = "v9.8.7-test+abc"
	var out, errOut bytes.Buffer
	if err := Run(context.Background(), []string{"--version"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if out.String() != "v9.8.7-test+abc\n" || errOut.Len() != 0 {
		t.Errorf("stdout %q, stderr %q; want the version line only", out.String(), errOut.String())
	}
}
