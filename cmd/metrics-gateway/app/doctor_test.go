package app

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestDoctorFlags needs no cluster: every case stops before the client
// config is built, except the last, which has no kubeconfig to read.
func TestDoctorFlags(t *testing.T) {
	for _, tc := range []struct {
		name       string
		args       []string
		wantErr    string
		wantStdout string
	}{
		{"help", []string{"doctor", "--help"}, "", "--as-serviceaccount"},
		{"unknown flag", []string{"doctor", "--no-such-flag"}, "unknown flag", ""},
		{"gateway flag is not a doctor flag", []string{"doctor", "--metric-resolution=15s"}, "unknown flag", ""},
		{"stray argument", []string{"doctor", "now"}, "doctor: unexpected arguments", ""},
		{"missing kubeconfig", []string{"doctor", "--kubeconfig", t.TempDir() + "/none"}, "doctor: kubernetes client config", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := Run(context.Background(), tc.args, &out, &errOut)
			if tc.wantErr == "" && err != nil {
				t.Fatalf("error %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if !strings.Contains(out.String(), tc.wantStdout) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantStdout, out.String())
			}
		})
	}
}
