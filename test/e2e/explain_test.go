package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
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
// recorded, as the controller's stabilization does. From the first ask on,
// the test also watches the controller rescale d (watchScales).
func explainHPA(ctx context.Context, t *testing.T, d deployment) explanation {
	t.Helper()
	watchScales(t, d)
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
// changes, so that checkAtReproduces knows the pods before the step, and
// starts watching the controller's rescales (watchScales) before it.
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

// rescale is a scale of an HPA's target as the controller reported it:
// the status it writes right after updating the scale, with the count it
// scaled from as current, and when the test saw that status.
type rescale struct {
	seen     time.Time
	from, to int32
}

// rescales keeps, by HPA, the rescales seen since its first explainHPA.
var rescales = struct {
	sync.Mutex
	watched map[string]bool
	m       map[string][]rescale
}{watched: map[string]bool{}, m: map[string][]rescale{}}

// watchScales watches d's HPA until t ends and records each rescale (a
// new status.lastScaleTime) the moment its status arrives.
func watchScales(t *testing.T, d deployment) {
	t.Helper()
	key := d.ns + "/" + d.name
	rescales.Lock()
	started := rescales.watched[key]
	rescales.watched[key] = true
	rescales.Unlock()
	if started {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := informers.NewSharedInformerFactoryWithOptions(e.Client, 0, informers.WithNamespace(d.ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = "metadata.name=" + d.name }))
	t.Cleanup(func() {
		cancel()
		f.Shutdown()
		rescales.Lock()
		delete(rescales.watched, key)
		rescales.Unlock()
	})
	informer := f.Autoscaling().V2().HorizontalPodAutoscalers().Informer()
	if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: func(o, n any) {
		was, now := o.(*autoscalingv2.HorizontalPodAutoscaler), n.(*autoscalingv2.HorizontalPodAutoscaler)
		if now.Status.LastScaleTime == nil || now.Status.LastScaleTime.Equal(was.Status.LastScaleTime) {
			return
		}
		seen := time.Now()
		rescales.Lock()
		rescales.m[key] = append(rescales.m[key], rescale{seen: seen, from: now.Status.CurrentReplicas, to: now.Status.DesiredReplicas})
		rescales.Unlock()
	}}); err != nil {
		t.Fatalf("watching HPA %s: %v", key, err)
	}
	f.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), informer.HasSynced) {
		t.Fatalf("watching HPA %s: the informer did not sync", key)
	}
}

// checkAtReproduces replays, with --at, from the gateway's recorded history
// alone, the controller's first rescale of d and the last hold explain
// reported: each names the replicas and the pods as they were then.
//
// The rescale is replayed at the moment the controller's status reporting
// it arrived: the metrics it acted on were in by then, and the recorder's
// last round before it still saw the count it scaled from, unless a round
// fell between the scale and its status; then the replay is of just before
// that round. A live explain sees a decision only in the seconds between
// the scrape that prompts it and the controller's next sync, and may miss
// it: that is why the controller, not explain, says when it was.
//
// The hold is compared with what explain said at the time. The gateway
// records a round every resolution, so a replay of a past time sees the
// target and pods of the last round before it: the hold compared is one
// whose target and pods had not changed for a round and more before it.
func checkAtReproduces(ctx context.Context, t *testing.T, d deployment) {
	t.Helper()
	key := d.ns + "/" + d.name
	explained.Lock()
	all := explained.m[key]
	explained.Unlock()
	rescales.Lock()
	scaled := rescales.m[key]
	rescales.Unlock()
	if len(scaled) == 0 {
		t.Fatalf("the controller rescaled %s, but no rescale was seen", d.name)
	}
	first := scaled[0]
	// The pods then are those explain named last before it, at the count
	// the controller scaled from.
	var before *explanation
	for i := range all {
		if all[i].At.Before(first.seen) && all[i].Current == first.from && all[i].Metrics != nil {
			before = &all[i]
		}
	}
	if before == nil {
		t.Fatalf("no explanation of %s at %d replicas before the controller scaled it to %d", d.name, first.from, first.to)
	}
	at := beforeRound(ctx, t, d, first)
	x := explainAt(ctx, t, d, at.Format(time.RFC3339Nano))
	if !x.Past || !x.Rebuilt || x.Current != first.from || x.Desired != first.to || !strings.HasPrefix(x.Verdict, fmt.Sprintf("scale from %d to %d", first.from, first.to)) || !slices.Equal(x.pods(), before.pods()) {
		t.Errorf("explain --at %s:\n got  %d → %d, pods %v: %s\n want %d → %d, pods %v (the controller's rescale, seen at %s)",
			at.Format(time.RFC3339Nano), x.Current, x.Desired, x.pods(), x.Verdict, first.from, first.to, before.pods(), first.seen.Format(time.RFC3339Nano))
	} else {
		t.Logf("explain --at %s reproduces the controller's rescale: %s", at.Format(time.RFC3339Nano), x.Verdict)
	}

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
	var then *explanation
	for i := len(all) - 1; i >= 0 && then == nil; i-- {
		if all[i].Desired == all[i].Current && all[i].Metrics != nil && steady(i) {
			then = &all[i]
		}
	}
	if then == nil {
		t.Fatalf("want a hold after a round without change among %d explanations of %s", len(all), d.name)
	}
	// Every pod of the target is listed, with its value (a pod of
	// another workload sharing the labels may be too).
	if n := len(then.pods()); n > 0 && n < int(then.Current) {
		t.Errorf("explain at %s listed %d pods for %d replicas: %v", then.At.Format(time.RFC3339), n, then.Current, then.pods())
	}
	x = explainAt(ctx, t, d, then.At.Format(time.RFC3339Nano))
	if !x.Past || !x.Rebuilt || x.Desired != then.Desired || x.Current != then.Current || x.Verdict != then.Verdict || !slices.Equal(x.pods(), then.pods()) {
		t.Errorf("explain --at %s:\n got  %d → %d, pods %v: %s\n want %d → %d, pods %v: %s (as explained then)",
			then.At.Format(time.RFC3339Nano), x.Current, x.Desired, x.pods(), x.Verdict, then.Current, then.Desired, then.pods(), then.Verdict)
		return
	}
	t.Logf("explain --at %s reproduces: %s", then.At.Format(time.RFC3339), x.Verdict)
}

// beforeRound is when to replay rescale r: when its status was seen, or,
// when the recorder's last round by then already read the new count (it
// fell between the scale and its status), just before that round.
func beforeRound(ctx context.Context, t *testing.T, d deployment, r rescale) time.Time {
	t.Helper()
	at := r.seen
	for range 3 {
		sel := fmt.Sprintf(`metrics_gateway_autoscaler_target_replicas{namespace=%q,horizontalpodautoscaler=%q} @ %.3f`, d.ns, d.name, float64(at.UnixMilli())/1000)
		n, err := promScalar(ctx, sel)
		if err != nil {
			t.Fatalf("the recorded target replicas: %v", err)
		}
		if int32(n) != r.to {
			return at
		}
		ts, err := promScalar(ctx, "timestamp("+sel+")")
		if err != nil {
			t.Fatalf("the recorded target replicas: %v", err)
		}
		round := time.UnixMilli(int64(math.Round(ts * 1000)))
		t.Logf("the recorder's round at %s read the rescale to %d seen at %s: replaying just before it", round.Format(time.RFC3339Nano), r.to, r.seen.Format(time.RFC3339Nano))
		at = round.Add(-time.Millisecond)
	}
	t.Fatalf("three rounds up to %s read %s at %d replicas: the rescale seen at %s is older than that", at.Format(time.RFC3339Nano), d.name, r.to, r.seen.Format(time.RFC3339Nano))
	return at
}
