package sim

import (
	"testing"
	"time"
)

// TestNodeReplacedPod covers a StatefulSet-style replacement: while the old pod
// stops, its successor with the same name already runs. The summary must list the
// name once (the collector rejects duplicate series) and the node counter must
// keep both pods' CPU and never go back.
func TestNodeReplacedPod(t *testing.T) {
	n := NewNode("node-a", testNodeIP, t0)
	p := Params{CPUBase: 1}
	old := &Pod{Namespace: "default", Name: "db-0", UID: "u1", Model: NewPodModel([]string{"db"}, p, t0)}
	n.addPod(old)
	old.stopping.Store(true)
	next := &Pod{Namespace: "default", Name: "db-0", UID: "u2", Model: NewPodModel([]string{"db"}, p, at(10*time.Second))}
	n.addPod(next)

	s := n.Snapshot(at(20 * time.Second))
	if sum := n.Summary(s); len(sum.Pods) != 1 || sum.Pods[0].PodRef.UID != "u2" {
		t.Fatalf("summary lists %+v, want only u2", sum.Pods)
	}
	// Overhead 0.1 × 20 s, old 1 core × 20 s, next 1 core × 10 s.
	approx(t, "node cpu seconds", s.CPUSeconds, 2+20+10)
	approx(t, "node cores", s.Rate.CPUCores, 0.1+2)

	n.removePod(old, at(20*time.Second))
	n.removePod(old, at(20*time.Second)) // twice is harmless
	after := n.Snapshot(at(20 * time.Second))
	approx(t, "node cpu seconds after removal", after.CPUSeconds, s.CPUSeconds)
	approx(t, "node cores after removal", after.Rate.CPUCores, 0.1+1)
}

func TestParseMode(t *testing.T) {
	for _, s := range []string{"ok", "garbage", "500", "hang"} {
		if m, err := ParseMode(s); err != nil || string(m) != s {
			t.Errorf("ParseMode(%q) = %q, %v", s, m, err)
		}
	}
	for _, s := range []string{"", "OK", "slow", "404"} {
		if _, err := ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) accepted", s)
		}
	}
}
