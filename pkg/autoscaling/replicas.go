package autoscaling

import (
	"errors"
	"fmt"
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// The replay below follows the HPA controller of Kubernetes 1.37
// (pkg/controller/podautoscaler, replica_calculator.go) step for step, and
// says at each step what it did and why, which the controller does not: the
// explain command and page print it. Values are milli-units, as the
// controller reads them (resource.Quantity.MilliValue), and its integer
// arithmetic is kept, since a truncated percent can decide a tie.

// Tolerance is how far a usage ratio may stray from 1 before the HPA acts:
// the controller's --horizontal-pod-autoscaler-tolerance (0.1) or the HPA's
// own behavior.scaleUp/scaleDown.tolerance.
type Tolerance struct{ Down, Up float64 }

// DefaultTolerance is kube-controller-manager's default.
var DefaultTolerance = Tolerance{Down: 0.1, Up: 0.1}

// Within reports whether ratio is close enough to 1 to hold.
func (t Tolerance) Within(ratio float64) bool { return 1-t.Down <= ratio && ratio <= 1+t.Up }

// Timing is the controller's readiness settings for cpu:
// --horizontal-pod-autoscaler-cpu-initialization-period (5m) and
// --horizontal-pod-autoscaler-initial-readiness-delay (30s).
type Timing struct {
	Now                     time.Time
	CPUInitializationPeriod time.Duration
	InitialReadinessDelay   time.Duration
}

// DefaultTiming is kube-controller-manager's defaults at now.
func DefaultTiming(now time.Time) Timing {
	return Timing{Now: now, CPUInitializationPeriod: 5 * time.Minute, InitialReadinessDelay: 30 * time.Second}
}

// Sample is a pod's value of a metric as the metrics API served it.
type Sample struct {
	Value     int64 // milli-units
	Timestamp time.Time
	Window    time.Duration
}

// Pod states in a replay.
const (
	Used    = "used"
	Ignored = "ignored"
	Unready = "unready"
	Missing = "missing"
)

// PodVerdict is what the replay made of one pod.
type PodVerdict struct {
	Name    string `json:"name"`
	State   string `json:"state"`            // Used, Ignored, Unready or Missing
	Reason  string `json:"reason,omitempty"` // why, for all but Used
	Value   int64  `json:"milliValue"`       // as served; 0 when Missing
	Request int64  `json:"milliRequest,omitempty"`
	// Assumed is the value the second pass put in for an unready or
	// missing pod (0 on a scale-up; the request or target on a scale-down).
	Assumed *int64 `json:"assumedMilliValue,omitempty"`
}

// MetricVerdict is one metric's proposal and how it came about.
type MetricVerdict struct {
	Pods []PodVerdict `json:"pods,omitempty"`
	// Current is what the HPA shows: a utilization percent, or an average
	// or total in milli-units.
	Current int64 `json:"current"`
	// Ratio is the usage ratio of the first pass; Adjusted the ratio after
	// unready and missing pods were filled in (0 when there was no second
	// pass).
	Ratio    float64 `json:"usageRatio"`
	Adjusted float64 `json:"adjustedUsageRatio,omitempty"`
	Proposal int32   `json:"proposal"`
	// Reason says in words why Proposal is what it is.
	Reason string `json:"reason"`
}

// group sorts pods into used, ignored, unready and missing as the
// controller's groupPods does; readiness rules apply to cpu only.
func group(pods []*corev1.Pod, samples map[string]Sample, cpu bool, t Timing) []PodVerdict {
	out := make([]PodVerdict, 0, len(pods))
	for _, p := range pods {
		v := PodVerdict{Name: p.Name, State: Used}
		s, found := samples[p.Name]
		v.Value = s.Value
		switch {
		case p.DeletionTimestamp != nil:
			v.State, v.Reason = Ignored, "being deleted"
		case p.Status.Phase == corev1.PodFailed:
			v.State, v.Reason = Ignored, "failed"
		case p.Status.Phase == corev1.PodPending:
			v.State, v.Reason = Unready, "pending"
		case !found:
			v.State, v.Reason, v.Value = Missing, "no value from the metrics API", 0
		case cpu:
			if reason := cpuUnready(p, s, t); reason != "" {
				v.State, v.Reason = Unready, reason
			}
		}
		out = append(out, v)
	}
	return out
}

// cpuUnready says why a pod's cpu sample is not used, "" when it is.
func cpuUnready(p *corev1.Pod, s Sample, t Timing) string {
	var ready *corev1.PodCondition
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			ready = &p.Status.Conditions[i]
		}
	}
	if ready == nil || p.Status.StartTime == nil {
		return "no Ready condition or start time yet"
	}
	start := p.Status.StartTime.Time
	if start.Add(t.CPUInitializationPeriod).After(t.Now) {
		if ready.Status == corev1.ConditionFalse {
			return fmt.Sprintf("not Ready, inside the cpu initialization period (%v)", t.CPUInitializationPeriod)
		}
		if s.Timestamp.Before(ready.LastTransitionTime.Add(s.Window)) {
			return fmt.Sprintf("inside the cpu initialization period (%v), and its sample's window began before it became Ready", t.CPUInitializationPeriod)
		}
		return ""
	}
	if ready.Status == corev1.ConditionFalse && start.Add(t.InitialReadinessDelay).After(ready.LastTransitionTime.Time) {
		return fmt.Sprintf("not Ready, and never Ready since it started (initial readiness delay %v)", t.InitialReadinessDelay)
	}
	return ""
}

// Requests sums a pod's requests of resource over its containers (one
// container when container is set) and restartable init containers, as
// the controller does without pod-level resources.
func Requests(p *corev1.Pod, container string, resource corev1.ResourceName) (int64, error) {
	containers := append([]corev1.Container{}, p.Spec.Containers...)
	for _, c := range p.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			containers = append(containers, c)
		}
	}
	var sum int64
	for _, c := range containers {
		if container != "" && c.Name != container {
			continue
		}
		q, ok := c.Resources.Requests[resource]
		if !ok {
			return 0, fmt.Errorf("container %s of pod %s requests no %s", c.Name, p.Name, resource)
		}
		sum += q.MilliValue()
		if container != "" {
			return sum, nil
		}
	}
	if container != "" {
		return 0, fmt.Errorf("pod %s has no container %s", p.Name, container)
	}
	return sum, nil
}

// errNoUsable is the controller's "did not receive metrics for targeted
// pods (pods might be unready)".
var errNoUsable = errors.New("no pod with a usable value: every pod is unready, missing its value or ignored")

// ceil32 is math.Ceil capped at the largest replica count.
func ceil32(f float64) int32 {
	if f > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(math.Ceil(f))
}
