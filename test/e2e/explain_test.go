package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// explanation is what the e2e suite reads of `explain -o json`
// (pkg/autoscaling.Explanation; this module does not import the gateway's).
type explanation struct {
	At      time.Time `json:"at"`
	Past    bool      `json:"past"`
	Verdict string    `json:"verdict"`
	Current int32     `json:"currentReplicas"`
	Desired int32     `json:"desiredReplicas"`
	Rebuilt bool      `json:"historyReconstructed"`
	Metrics []metricExplanation
}

type metricExplanation struct {
	Name    string `json:"name"`
	Error   string `json:"error"`
	Verdict struct {
		Proposal int32 `json:"proposal"`
		Pods     []struct {
			Name   string `json:"name"`
			State  string `json:"state"`
			Reason string `json:"reason"`
			Value  int64  `json:"milliValue"`
		} `json:"pods"`
	} `json:"verdict"`
}

// pods are the names of the pods the first metric lists.
func (x explanation) pods() []string {
	var out []string
	if len(x.Metrics) > 0 {
		for _, p := range x.Metrics[0].Verdict.Pods {
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return out
}

// explained keeps every explanation a scenario asked for, by HPA, for
// checkAtReproduces.
var explained = struct {
	sync.Mutex
	m map[string][]explanation
}{m: map[string][]explanation{}}

// explainHPA asks the gateway for d's HPA now: `explain --gateway` through
// its loopback listener, so the replay sees the recommendations the gateway
// recorded, as the controller's stabilization does.
func explainHPA(ctx context.Context, t *testing.T, d deployment) explanation {
	t.Helper()
	x := explainAt(ctx, t, d, "")
	explained.Lock()
	explained.m[d.ns+"/"+d.name] = append(explained.m[d.ns+"/"+d.name], x)
	explained.Unlock()
	return x
}

// explainAt runs explain -o json on d's HPA at at (now when empty).
func explainAt(ctx context.Context, t *testing.T, d deployment, at string) explanation {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	args := []string{"explain", "hpa", d.name, "-n", d.ns, "-o", "json", "--kubeconfig", e.Cluster.Kubeconfig, "--gateway", e.Gateway.PagesURL}
	if at != "" {
		args = append(args, "--at", at)
	}
	out, err := exec.CommandContext(ctx, e.Gateway.Bin(), args...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("explain %v: %v: %s%s", args, err, out, stderr)
	}
	var x explanation
	if err := json.Unmarshal(out, &x); err != nil {
		t.Fatalf("explain -o json: %v: %s", err, out)
	}
	return x
}

// explainNames waits until explain names want replicas for d's HPA: as
// the count it wants, or as the current one when the controller got there
// between two looks.
func explainNames(ctx context.Context, t *testing.T, d deployment, want int32, timeout time.Duration) {
	t.Helper()
	var last string
	eventually(t, timeout, fmt.Sprintf("explain naming %d replicas", want), func() error {
		x := explainHPA(ctx, t, d)
		last = x.Verdict
		if x.Desired != want && x.Current != want {
			return fmt.Errorf("explain: %s", x.Verdict)
		}
		return nil
	})
	t.Logf("explain: %s", last)
}

// explainSteady asks explain every 2s for a round and more while nothing
// changes, so that checkAtReproduces finds the decision that follows a
// step steady before it.
func explainSteady(ctx context.Context, t *testing.T, d deployment) {
	t.Helper()
	for end := time.Now().Add(e.Resolution + 6*time.Second); time.Now().Before(end); time.Sleep(2 * time.Second) {
		explainHPA(ctx, t, d)
	}
}

// explainSays waits until explain's verdict for d's HPA contains all of
// words while the target still has current replicas, and returns it.
func explainSays(ctx context.Context, t *testing.T, d deployment, current int32, timeout time.Duration, words ...string) explanation {
	t.Helper()
	var x explanation
	eventually(t, timeout, fmt.Sprintf("explain saying %q at %d replicas", words, current), func() error {
		x = explainHPA(ctx, t, d)
		if x.Current != current {
			t.Fatalf("the target left %d replicas before explain said %q; last: %s", current, words, x.Verdict)
		}
		for _, w := range words {
			if !strings.Contains(x.Verdict, w) {
				return fmt.Errorf("explain: %s", x.Verdict)
			}
		}
		return nil
	})
	t.Logf("explain: %s", x.Verdict)
	return x
}

// checkAtReproduces replays, with --at, the first scale decision and the
// last hold that explain reported for d's HPA, from the gateway's recorded
// history alone: each names the replicas, the reason and the pods it named
// then. The gateway records a round every resolution, so a replay of a past
// time sees the target and pods of the last round before it: the
// explanations compared are those whose target and pods had not changed
// for a round and more before them.
func checkAtReproduces(ctx context.Context, t *testing.T, d deployment) {
	t.Helper()
	explained.Lock()
	all := explained.m[d.ns+"/"+d.name]
	explained.Unlock()
	steady := func(i int) bool {
		for j := i - 1; j >= 0; j-- {
			if all[j].Current != all[i].Current || !slices.Equal(all[j].pods(), all[i].pods()) {
				return false
			}
			if all[i].At.Sub(all[j].At) >= e.Resolution+5*time.Second {
				return true
			}
		}
		return false
	}
	var picks []explanation
	for i, x := range all {
		if x.Desired != x.Current && x.Metrics != nil && steady(i) {
			picks = append(picks, x)
			break
		}
	}
	for i := len(all) - 1; i >= 0; i-- {
		if all[i].Desired == all[i].Current && all[i].Metrics != nil && steady(i) {
			picks = append(picks, all[i])
			break
		}
	}
	if len(picks) != 2 {
		t.Fatalf("want a scale decision and a hold, each after a round without change, among %d explanations of %s", len(all), d.name)
	}
	for _, then := range picks {
		// Every pod of the target is listed, with its value (a pod of
		// another workload sharing the labels may be too).
		if n := len(then.pods()); n > 0 && n < int(then.Current) {
			t.Errorf("explain at %s listed %d pods for %d replicas: %v", then.At.Format(time.RFC3339), n, then.Current, then.pods())
		}
		x := explainAt(ctx, t, d, then.At.Format(time.RFC3339Nano))
		if !x.Past || !x.Rebuilt || x.Desired != then.Desired || x.Current != then.Current || x.Verdict != then.Verdict || !slices.Equal(x.pods(), then.pods()) {
			t.Errorf("explain --at %s:\n got  %d → %d, pods %v: %s\n want %d → %d, pods %v: %s (as explained then)",
				then.At.Format(time.RFC3339Nano), x.Current, x.Desired, x.pods(), x.Verdict, then.Current, then.Desired, then.pods(), then.Verdict)
			continue
		}
		t.Logf("explain --at %s reproduces: %s", then.At.Format(time.RFC3339), x.Verdict)
	}
}
