package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func parse(t *testing.T, args ...string) options {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o options
	o.addFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return o
}

func TestDefaults(t *testing.T) {
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("  abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := parse(t, "--kubeconfig=k", "--token-file="+token, "--cert-dir=d").complete()
	if err != nil {
		t.Fatal(err)
	}
	if c.token != "abc" {
		t.Errorf("token = %q, want it trimmed", c.token)
	}
	want := []string{"sim-node-0@127.0.0.10", "sim-node-1@127.0.0.11", "sim-node-2@127.0.0.12"}
	var got []string
	for _, n := range c.nodeConfigs {
		got = append(got, n.Name+"@"+n.IP.String())
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("nodes = %v, want %v", got, want)
	}
	if c.podBase.String() != "127.1.0.0" || c.kubeletPort != 10250 || c.controlAddr != "127.0.0.1:0" {
		t.Errorf("defaults = %+v", c)
	}
}

// TestValidationReportsEverything checks that one run shows every mistake.
func TestValidationReportsEverything(t *testing.T) {
	_, err := parse(t, "--nodes=0", "--kubelet-port=70000", "--first-ip=10.0.0.1", "--pod-cidr-base=x",
		"--token-file=/nonexistent/token").complete()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"--kubeconfig is required", "--nodes=0", "--kubelet-port=70000", "--cert-dir is required",
		"--token-file", "--pod-cidr-base"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	_, err = parse(t, "--nodes=3", "--first-ip=127.255.255.254").complete()
	if err == nil || !strings.Contains(err.Error(), "leaves 127.0.0.0/8") {
		t.Errorf("node range past 127/8: %v", err)
	}
}

func TestRunRejectsBadFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"--nodes=-1"}, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "--kubeconfig is required") {
		t.Errorf("run = %v", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("announced readiness on failure: %q", stdout.String())
	}
}
