package app

import (
	"testing"
)

// TestDoctorFlags needs no cluster: every case stops before the client
// config is built, except the last, which has no kubeconfig to read.
func TestDoctorFlags(t *testing.T) {
	checkRunCases(t, []runCase{
		{"help", []string{"doctor", "--help"}, "", "--as-serviceaccount"},
		{"unknown flag", []string{"doctor", "--no-such-flag"}, "unknown flag", ""},
		{"gateway flag is not a doctor flag", []string{"doctor", "--metric-resolution=15s"}, "unknown flag", ""},
		{"stray argument", []string{"doctor", "now"}, "doctor: unexpected arguments", ""},
		{"missing kubeconfig", []string{"doctor", "--kubeconfig", t.TempDir() + "/none"}, "doctor: kubernetes client config", ""},
	})
}
