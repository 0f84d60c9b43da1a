package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Attach must never adopt a PID that now belongs to another program (a reboot or PID
// wrap-around since `up`): `down` would kill it.
func TestAttachDropsForeignAndDeadPIDs(t *testing.T) {
	dir := t.TempDir()
	l := layout{dir: dir}
	if err := writeState(l, state{Host: "https://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	// A process of ours: its command line names dir, as every component's flags do.
	owned := exec.Command(os.Args[0], "-test.run=^TestHelperSleep$", "--", dir)
	owned.Env = append(os.Environ(), "CLUSTER_TEST_HELPER_SLEEP=1")
	if err := owned.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { owned.Process.Kill(); owned.Wait() })
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	pids := fmt.Sprintf("etcd %d\nkube-apiserver %d\nkube-scheduler %d\n",
		os.Getpid(), dead.Process.Pid, owned.Process.Pid)
	if err := os.WriteFile(l.pidsFile(), []byte(pids), 0o644); err != nil {
		t.Fatal(err)
	}

	c, err := Attach(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.procs) != 1 || c.procs[0].pid != owned.Process.Pid || c.procs[0].name != "kube-scheduler" {
		t.Fatalf("attached %+v, want only kube-scheduler pid %d", c.procs, owned.Process.Pid)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for pidAlive(owned.Process.Pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if pidAlive(owned.Process.Pid) {
		t.Error("owned process survived Stop")
	}
	if _, err := os.Stat(l.pidsFile()); !os.IsNotExist(err) {
		t.Errorf("pids file after Stop: %v, want removed", err)
	}
}

// TestHelperSleep is not a test: TestAttachDropsForeignAndDeadPIDs runs the test binary
// as a long-lived child whose command line names the state dir.
func TestHelperSleep(t *testing.T) {
	if os.Getenv("CLUSTER_TEST_HELPER_SLEEP") != "1" {
		t.Skip("helper process only")
	}
	time.Sleep(time.Minute)
}

func TestAttachWithoutState(t *testing.T) {
	if _, err := Attach(t.TempDir()); err == nil {
		t.Fatal("Attach on an empty dir succeeded")
	}
}

func TestLastLines(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"", 3, ""},
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb", 5, "a\nb"},
		{"a\n\n", 1, "a"},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%q/%d", tc.in, tc.n), func(t *testing.T) {
			if got := lastLines(tc.in, tc.n); got != tc.want {
				t.Errorf("lastLines = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestFreePortsDistinct(t *testing.T) {
	ports, err := freePorts(5)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int]bool{}
	for _, p := range ports {
		if p <= 0 || seen[p] {
			t.Fatalf("ports %v: want 5 distinct positive ports", ports)
		}
		seen[p] = true
	}
}
