package autoscaling

import (
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The cases below are the HPA controller's own, from Kubernetes 1.37's
// pkg/controller/podautoscaler/replica_calculator_test.go (test function and
// case name in each), with its fixture's settings: cpu initialization
// period 2m, initial readiness delay 10s, tolerance 0.1, "hot" pods started
// now and "cool" ones 3 minutes ago, samples with a zero timestamp and a
// one-minute window. Its pods have two containers of 1 core each and equal
// levels; one container of 1 core at that level gives the same ratios.

type fixturePod struct {
	ready    corev1.ConditionStatus // "" for True
	phase    corev1.PodPhase        // "" for Running
	hot      bool
	deleting bool
}

type replayCase struct {
	name     string // Test function: case
	current  int32
	pods     []fixturePod // nil: current plain pods
	levels   []int64      // by pod index; fewer than pods: the rest miss
	target   int64        // utilization percent, or average milli-units
	want     int32
	wantCur  int64
	wantPods string // states in pod order, e.g. "used unready used"
}

func (c replayCase) build(now time.Time) ([]*corev1.Pod, map[string]Sample) {
	specs := c.pods
	if specs == nil {
		specs = make([]fixturePod, c.current)
	}
	var pods []*corev1.Pod
	samples := map[string]Sample{}
	for i, s := range specs {
		start := metav1.NewTime(time.Time{}) // long ago: "cool"
		if s.hot {
			start = metav1.NewTime(now)
		}
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("pod-%d", i)},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}}}}},
			Status: corev1.PodStatus{
				Phase: corev1.PodRunning, StartTime: &start,
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			},
		}
		if s.ready != "" {
			p.Status.Conditions[0].Status = s.ready
		}
		if s.phase != "" {
			p.Status.Phase = s.phase
		}
		if s.deleting {
			p.DeletionTimestamp = &metav1.Time{Time: now}
		}
		pods = append(pods, p)
		if i < len(c.levels) {
			samples[p.Name] = Sample{Value: c.levels[i], Window: time.Minute}
		}
	}
	// Superfluous samples (pods the selector no longer matches).
	for i := len(specs); i < len(c.levels); i++ {
		samples[fmt.Sprintf("pod-%d", i)] = Sample{Value: c.levels[i], Window: time.Minute}
	}
	return pods, samples
}

var (
	notReady = fixturePod{ready: corev1.ConditionFalse}
	cool     = fixturePod{}
	hot      = fixturePod{hot: true}
	failed   = fixturePod{ready: corev1.ConditionFalse, phase: corev1.PodFailed}
	pending  = fixturePod{ready: corev1.ConditionFalse, phase: corev1.PodPending}
	deleting = fixturePod{ready: corev1.ConditionFalse, deleting: true}
)

func fixtureTiming(now time.Time) Timing {
	return Timing{Now: now, CPUInitializationPeriod: 2 * time.Minute, InitialReadinessDelay: 10 * time.Second}
}

func states(m MetricVerdict) string {
	var s []string
	for _, p := range m.Pods {
		s = append(s, p.State)
	}
	return strings.Join(s, " ")
}

// TestResourceUtilization: TestReplicaCalcResourceScale and
// TestReplicaCalcResourceMissingMetrics.
func TestResourceUtilization(t *testing.T) {
	for _, c := range []replayCase{
		{name: "ResourceScale: scale up", current: 3, levels: []int64{300, 500, 700}, target: 30, want: 5, wantCur: 50, wantPods: "used used used"},
		{name: "ResourceScale: scale up: unready pod scales less", current: 3, pods: []fixturePod{notReady, cool, cool}, levels: []int64{300, 500, 700}, target: 30, want: 4, wantCur: 60, wantPods: "unready used used"},
		{name: "ResourceScale: scale up: hot-CPU pod scales less", current: 3, pods: []fixturePod{hot, cool, cool}, levels: []int64{300, 500, 700}, target: 30, want: 4, wantCur: 60, wantPods: "unready used used"},
		{name: "ResourceScale: no scale: unready pods ignored", current: 3, pods: []fixturePod{cool, notReady, notReady}, levels: []int64{400, 500, 700}, target: 30, want: 3, wantCur: 40},
		{name: "ResourceScale: no scale: hot-CPU pods ignored", current: 3, pods: []fixturePod{cool, {ready: corev1.ConditionFalse, hot: true}, {ready: corev1.ConditionFalse, hot: true}}, levels: []int64{400, 500, 700}, target: 30, want: 3, wantCur: 40},
		{name: "ResourceScale: scale up: failed pods ignored", current: 2, pods: []fixturePod{cool, cool, failed, failed}, levels: []int64{500, 700}, target: 30, want: 4, wantCur: 60, wantPods: "used used ignored ignored"},
		{name: "ResourceScale: scale up: pods being deleted are ignored", current: 2, pods: []fixturePod{cool, cool, deleting, deleting}, levels: []int64{500, 700}, target: 30, want: 4, wantCur: 60},
		{name: "ResourceScale: scale down", current: 5, levels: []int64{100, 300, 500, 250, 250}, target: 50, want: 3, wantCur: 28},
		{name: "ResourceScale: scale down: exclude unready pods", current: 5, pods: []fixturePod{cool, cool, cool, notReady, notReady}, levels: []int64{100, 300, 500, 250, 250}, target: 50, want: 2, wantCur: 30},
		{name: "ResourceScale: scale down: exclude unscheduled pods", current: 5, pods: []fixturePod{cool, pending, pending, pending, pending}, levels: []int64{100}, target: 50, want: 1, wantCur: 10, wantPods: "used unready unready unready unready"},
		{name: "ResourceScale: scale down: ignore hot-CPU pods", current: 5, pods: []fixturePod{cool, cool, cool, hot, hot}, levels: []int64{100, 300, 500, 250, 250}, target: 50, want: 2, wantCur: 30},
		{name: "ResourceScale: scale down: failed pods ignored", current: 5, pods: []fixturePod{cool, cool, cool, cool, cool, failed, failed}, levels: []int64{100, 300, 500, 250, 250}, target: 50, want: 3, wantCur: 28},
		{name: "ResourceMissingMetrics: superfluous metrics counted", current: 4, levels: []int64{4000, 9500, 3000, 7000, 3200, 2000}, target: 100, want: 24, wantCur: 587},
		{name: "ResourceMissingMetrics: some pods missing metrics scales down", current: 4, levels: []int64{400, 95}, target: 100, want: 3, wantCur: 24, wantPods: "used used missing missing"},
		{name: "ResourceMissingMetrics: no change: metric equal to target", current: 2, levels: []int64{1000}, target: 100, want: 2, wantCur: 100},
		{name: "ResourceMissingMetrics: no change: metric above target", current: 2, levels: []int64{1900}, target: 100, want: 2, wantCur: 190},
		{name: "ResourceMissingMetrics: no change: metric below target", current: 2, levels: []int64{600}, target: 100, want: 2, wantCur: 60},
		{name: "ResourceMissingMetrics: no change: unready pod metric missing", current: 3, pods: []fixturePod{notReady, cool, cool}, levels: []int64{100, 450}, target: 50, want: 3, wantCur: 45},
		{name: "ResourceMissingMetrics: no change: hot-CPU pod metric missing", current: 3, pods: []fixturePod{hot, cool, cool}, levels: []int64{100, 450}, target: 50, want: 3, wantCur: 45},
		{name: "ResourceMissingMetrics: scale up: unready pod metric missing", current: 3, pods: []fixturePod{notReady, cool, cool}, levels: []int64{100, 2000}, target: 50, want: 4, wantCur: 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := time.Now()
			pods, samples := c.build(now)
			m, err := ResourceUtilization(c.current, pods, samples, corev1.ResourceCPU, "", int32(c.target), DefaultTolerance, fixtureTiming(now))
			if err != nil {
				t.Fatal(err)
			}
			if m.Proposal != c.want || m.Current != c.wantCur {
				t.Errorf("proposal %d at %d%%, want %d at %d%%: %s", m.Proposal, m.Current, c.want, c.wantCur, m.Reason)
			}
			if c.wantPods != "" && states(m) != c.wantPods {
				t.Errorf("pods %s, want %s", states(m), c.wantPods)
			}
			if m.Reason == "" {
				t.Error("no reason given")
			}
		})
	}
}

// TestAverageValue: TestReplicaCalcPodMetric (a Pods metric: no readiness
// rules, missing pods filled at the target on a scale-down).
func TestAverageValue(t *testing.T) {
	for _, c := range []replayCase{
		{name: "PodMetric: scale up", current: 3, levels: []int64{20000, 10000, 30000}, target: 15000, want: 4, wantCur: 20000},
		{name: "PodMetric: scale up: unready hot-CPU pod scales less", current: 3, pods: []fixturePod{cool, cool, {ready: corev1.ConditionFalse, hot: true}}, levels: []int64{50000, 10000, 30000}, target: 15000, want: 6, wantCur: 30000},
		{name: "PodMetric: scale up: unready hot-CPU pods avoid scale-down", current: 3, pods: []fixturePod{{ready: corev1.ConditionFalse, hot: true}, cool, {ready: corev1.ConditionFalse, hot: true}}, levels: []int64{50000, 15000, 30000}, target: 15000, want: 7, wantCur: 31666},
		{name: "PodMetric: scale down", current: 5, levels: []int64{12000, 12000, 12000, 12000, 12000}, target: 20000, want: 3, wantCur: 12000},
		{name: "PodMetric: within default tolerance", current: 3, levels: []int64{20000, 21000, 21000}, target: 20000, want: 3, wantCur: 20666},
		{name: "PodMetric: no change: missing metrics", current: 5, levels: []int64{20000, 19000, 21000}, target: 20000, want: 5, wantCur: 20000},
		{name: "PodMetric: rolling update with maxSurge: extra pod missing metric", current: 2, pods: []fixturePod{cool, cool, cool}, levels: []int64{10000, 10000}, target: 17000, want: 2, wantCur: 10000, wantPods: "used used missing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := time.Now()
			pods, samples := c.build(now)
			m, err := AverageValue(c.current, pods, samples, "", c.target, DefaultTolerance, fixtureTiming(now))
			if err != nil {
				t.Fatal(err)
			}
			if m.Proposal != c.want || m.Current != c.wantCur {
				t.Errorf("proposal %d at %dm, want %d at %dm: %s", m.Proposal, m.Current, c.want, c.wantCur, m.Reason)
			}
			if c.wantPods != "" && states(m) != c.wantPods {
				t.Errorf("pods %s, want %s", states(m), c.wantPods)
			}
		})
	}
	// TestReplicaCalcPodMetric "outside configurable 1% tolerance".
	pods, samples := replayCase{current: 3, levels: []int64{20000, 21000, 21000}}.build(time.Now())
	if m, _ := AverageValue(3, pods, samples, "", 20000, Tolerance{Down: 0.1, Up: 0.01}, DefaultTiming(time.Now())); m.Proposal != 4 {
		t.Errorf("1%% scale-up tolerance: %d, want 4: %s", m.Proposal, m.Reason)
	}
}

// TestTotals: TestReplicaCalcObjectMetric (its numbers), and the
// AverageValue form of Object and External metrics (numbers of our own:
// the controller's per-pod cases take theirs from fixtures not copied here).
func TestTotals(t *testing.T) {
	now := time.Now()
	three, _ := replayCase{current: 3}.build(now)
	five, _ := replayCase{current: 5}.build(now)
	someUnready, _ := replayCase{current: 3, pods: []fixturePod{notReady, cool, notReady}}.build(now)
	for _, c := range []struct {
		name string
		got  func() (MetricVerdict, error)
		want int32
	}{
		{"ObjectMetric: scale up", func() (MetricVerdict, error) { return Value(3, three, 20000, 15000, DefaultTolerance) }, 4},
		{"ObjectMetric: scale up: very large metric saturates replicas to MaxInt32", func() (MetricVerdict, error) {
			return Value(3, three, 1<<63-1, 1, DefaultTolerance)
		}, 1<<31 - 1},
		{"ObjectMetric: scale up: ignores unready pods", func() (MetricVerdict, error) { return Value(3, someUnready, 50000, 10000, DefaultTolerance) }, 5},
		{"ObjectMetric: scale down", func() (MetricVerdict, error) { return Value(5, five, 12000, 20000, DefaultTolerance) }, 3},
		{"ObjectMetric: within default tolerance", func() (MetricVerdict, error) { return Value(3, three, 20666, 20000, DefaultTolerance) }, 3},
		{"ObjectMetric: outside configurable 1% tolerance", func() (MetricVerdict, error) {
			return Value(3, three, 20666, 20000, Tolerance{Down: 0.1, Up: 0.01})
		}, 4},
		{"ObjectMetric: scaled to zero", func() (MetricVerdict, error) { return Value(0, nil, 25000, 10000, DefaultTolerance) }, 3},
		{"average of a total: scale up", func() (MetricVerdict, error) { return AverageOfTotal(3, 60000, 15000, DefaultTolerance) }, 4},
		{"average of a total: scale down", func() (MetricVerdict, error) { return AverageOfTotal(5, 60000, 20000, DefaultTolerance) }, 3},
		{"average of a total: within default tolerance", func() (MetricVerdict, error) { return AverageOfTotal(3, 62000, 20000, DefaultTolerance) }, 3},
		{"average of a total: saturates at MaxInt32", func() (MetricVerdict, error) { return AverageOfTotal(3, 1<<62, 1, DefaultTolerance) }, 1<<31 - 1},
	} {
		m, err := c.got()
		if err != nil || m.Proposal != c.want {
			t.Errorf("%s: %d %v, want %d (%s)", c.name, m.Proposal, err, c.want, m.Reason)
		}
	}
}
