package autoscaling

import (
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/utils/ptr"
)

// rules is the controller test's generateScalingRules: a pods policy and
// a percent policy (each left out when 0), selectPolicy Max.
func rules(pods, podsPeriod, percent, percentPeriod, window int32) *autoscalingv2.HPAScalingRules {
	r := &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: ptr.To(window), SelectPolicy: ptr.To(autoscalingv2.MaxChangePolicySelect)}
	if pods != 0 {
		r.Policies = append(r.Policies, autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PodsScalingPolicy, Value: pods, PeriodSeconds: podsPeriod})
	}
	if percent != 0 {
		r.Policies = append(r.Policies, autoscalingv2.HPAScalingPolicy{Type: autoscalingv2.PercentScalingPolicy, Value: percent, PeriodSeconds: percentPeriod})
	}
	return r
}

// TestLimit: the cases without earlier scale events of Kubernetes 1.37's
// TestScalingWithRules (pkg/controller/podautoscaler/horizontal_test.go),
// behavior defaulted where the case gives none.
func TestLimit(t *testing.T) {
	for _, c := range []struct {
		name                      string
		up, down                  *autoscalingv2.HPAScalingRules
		minR, maxR, current, want int32
		desired                   int32
		reason                    string
	}{
		{name: "prenormalized desired replicas within range", minR: 3, maxR: 8, current: 5, desired: 7, want: 7, reason: "DesiredWithinRange"},
		{name: "prenormalized desired replicas < minReplicas", minR: 2, maxR: 8, current: 3, desired: 1, want: 2, reason: "TooFewReplicas"},
		{name: "prenormalized desired replicas within range when minReplicas is 0", minR: 0, maxR: 10, current: 1, desired: 0, want: 0, reason: "DesiredWithinRange"},
		{name: "maxReplicas is the limit because maxReplicas < scaleUpLimit", minR: 1, maxR: 10, current: 20, desired: 1000, want: 10, reason: "TooManyReplicas"},
		{name: "desired replica count is more than the maximum replica count", minR: 100, maxR: 150, current: 100, desired: 1000, want: 150, reason: "TooManyReplicas"},
		{name: "scaleUpLimit is the limit because scaleUpLimit < maxReplicas with user policies", up: rules(0, 0, 1, 60, 0), minR: 1, maxR: 2000, current: 3, desired: 1000, want: 4, reason: "ScaleUpLimit"},
		{name: "scaleUp with default behavior", minR: 1, maxR: 1000, current: 10, desired: 50, want: 20, reason: "ScaleUpLimit"},
		{name: "scaleUp with pods policy larger than percent policy", up: rules(100, 60, 100, 60, 0), minR: 1, maxR: 1000, current: 10, desired: 500, want: 110, reason: "ScaleUpLimit"},
		{name: "scaleUp with percent policy larger than pods policy", up: rules(2, 60, 100, 60, 0), minR: 1, maxR: 1000, current: 10, desired: 500, want: 20, reason: "ScaleUpLimit"},
		{name: "scaleUp with spec MaxReplicas limitation with large pod policy", up: rules(100, 60, 0, 0, 0), minR: 1, maxR: 1000, current: 10, desired: 50, want: 50, reason: "DesiredWithinRange"},
		{name: "scaleUp with spec MaxReplicas limitation with large percent policy", up: rules(10000, 60, 0, 0, 0), minR: 1, maxR: 1000, current: 10, desired: 50, want: 50, reason: "DesiredWithinRange"},
		{name: "scaleUp with pod policy limitation", up: rules(30, 60, 0, 0, 0), minR: 1, maxR: 1000, current: 10, desired: 50, want: 40, reason: "ScaleUpLimit"},
		{name: "scaleUp with percent policy limitation", up: rules(0, 0, 200, 60, 0), minR: 1, maxR: 1000, current: 10, desired: 50, want: 30, reason: "ScaleUpLimit"},
		{name: "scaleDown with percent policy larger than pod policy", down: rules(20, 60, 1, 60, 300), minR: 1, maxR: 1000, current: 100, desired: 2, want: 80, reason: "ScaleDownLimit"},
		{name: "scaleDown with pod policy larger than percent policy", down: rules(2, 60, 1, 60, 300), minR: 1, maxR: 1000, current: 100, desired: 2, want: 98, reason: "ScaleDownLimit"},
		{name: "scaleDown with spec MinReplicas limitation with large pod policy", down: rules(100, 60, 0, 0, 300), minR: 1, maxR: 1000, current: 10, desired: 0, want: 1, reason: "TooFewReplicas"},
		{name: "scaleDown with spec MinReplicas limitation with large percent policy", down: rules(0, 0, 100, 60, 300), minR: 5, maxR: 1000, current: 10, desired: 2, want: 5, reason: "TooFewReplicas"},
		{name: "scaleDown with pod policy limitation", down: rules(5, 60, 0, 0, 300), minR: 1, maxR: 1000, current: 10, desired: 2, want: 5, reason: "ScaleDownLimit"},
		{name: "scaleDown with percent policy limitation", down: rules(0, 0, 50, 60, 300), minR: 1, maxR: 1000, current: 10, desired: 5, want: 5, reason: "DesiredWithinRange"},
	} {
		b := Behavior(&autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: c.up, ScaleDown: c.down}, DefaultDownscaleStabilization)
		got, reason := Limit(time.Now(), c.current, c.desired, c.minR, c.maxR, nil, b)
		if got != c.want || reason != c.reason {
			t.Errorf("%s: %d %s, want %d %s", c.name, got, reason, c.want, c.reason)
		}
	}
}

// TestLimitCountsEarlierEvents: a change inside a policy's period moves
// the period's starting point.
func TestLimitCountsEarlierEvents(t *testing.T) {
	now := time.Now()
	b := Behavior(&autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: rules(4, 60, 0, 0, 0)}, DefaultDownscaleStabilization)
	// 10 replicas, 3 of them added 30 s ago: the period started at 7, so 11.
	if got, reason := Limit(now, 10, 50, 1, 100, []ScaleEvent{{At: now.Add(-30 * time.Second), Change: 3}}, b); got != 11 || reason != "ScaleUpLimit" {
		t.Errorf("with an event inside the period: %d %s, want 11 ScaleUpLimit", got, reason)
	}
	// Outside the period it does not count.
	if got, _ := Limit(now, 10, 50, 1, 100, []ScaleEvent{{At: now.Add(-90 * time.Second), Change: 3}}, b); got != 14 {
		t.Errorf("with an event outside the period: %d, want 14", got)
	}
	disabled := Behavior(&autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{SelectPolicy: ptr.To(autoscalingv2.DisabledPolicySelect)}}, DefaultDownscaleStabilization)
	if got, reason := Limit(now, 10, 2, 1, 100, nil, disabled); got != 10 || reason != "ScaleDownLimit" {
		t.Errorf("scale-down disabled: %d %s, want 10 ScaleDownLimit", got, reason)
	}
}

// TestStabilize: the highest recommendation of the scale-down window holds
// a scale-down; the scale-up window (0 by default) holds nothing.
func TestStabilize(t *testing.T) {
	now := time.Now()
	b := Behavior(nil, DefaultDownscaleStabilization)
	history := []Recommendation{{At: now.Add(-4 * time.Minute), Replicas: 5}, {At: now.Add(-time.Minute), Replicas: 3}, {At: now.Add(-6 * time.Minute), Replicas: 9}}
	if got, why := Stabilize(now, 5, 2, history, b); got != 5 || why == "" {
		t.Errorf("scale-down inside the window: %d %q, want 5 held", got, why)
	}
	if got, why := Stabilize(now, 5, 2, history[2:], b); got != 2 || why != "" {
		t.Errorf("scale-down with only older recommendations: %d %q, want 2", got, why)
	}
	if got, why := Stabilize(now, 5, 8, history, b); got != 8 || why != "" {
		t.Errorf("scale-up: %d %q, want 8", got, why)
	}
	withUp := Behavior(&autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: rules(4, 15, 100, 15, 120)}, DefaultDownscaleStabilization)
	if got, why := Stabilize(now, 5, 8, history, withUp); got != 5 || why == "" {
		t.Errorf("scale-up inside a 2m scale-up window: %d %q, want 5 held", got, why)
	}
}

// TestWithoutBehavior: an HPA without spec.behavior takes the controller's
// older path. The stabilization cases are Kubernetes 1.37's
// TestNormalizeDesiredReplicas (pkg/controller/podautoscaler/
// horizontal_test.go), whose window is 5m; the limits are
// convertDesiredReplicasWithRules': twice the replicas or 4, per sync.
func TestWithoutBehavior(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name            string
		history         []Recommendation
		proposal, want  int32
		heldByOlderOnes bool
	}{
		{name: "empty log", proposal: 5, want: 5},
		{name: "stabilize", history: []Recommendation{{At: now.Add(-2 * time.Minute), Replicas: 4}, {At: now.Add(-time.Minute), Replicas: 5}}, proposal: 3, want: 5, heldByOlderOnes: true},
		{name: "no stabilize", history: []Recommendation{{At: now.Add(-2 * time.Minute), Replicas: 1}, {At: now.Add(-time.Minute), Replicas: 2}}, proposal: 3, want: 3},
		{name: "no stabilize - old recommendations", history: []Recommendation{{At: now.Add(-10 * time.Minute), Replicas: 10}, {At: now.Add(-9 * time.Minute), Replicas: 9}}, proposal: 3, want: 3},
		{name: "stabilize - old recommendations", history: []Recommendation{{At: now.Add(-10 * time.Minute), Replicas: 10}, {At: now.Add(-time.Minute), Replicas: 4}, {At: now.Add(-2 * time.Minute), Replicas: 5}, {At: now.Add(-9 * time.Minute), Replicas: 9}}, proposal: 3, want: 5, heldByOlderOnes: true},
	} {
		got, why := StabilizeWithoutBehavior(now, c.proposal, c.history, DefaultDownscaleStabilization)
		if got != c.want || (why != "") != c.heldByOlderOnes {
			t.Errorf("%s: %d %q, want %d (held: %v)", c.name, got, why, c.want, c.heldByOlderOnes)
		}
	}
	// Unlike the behavior's scale-down window, this one also raises a
	// scale-up to a higher recommendation inside it.
	if got, _ := StabilizeWithoutBehavior(now, 3, []Recommendation{{At: now.Add(-time.Minute), Replicas: 4}}, DefaultDownscaleStabilization); got != 4 {
		t.Errorf("a scale-up to 3 after a recommendation of 4: %d, want 4", got)
	}
	if got, _ := Stabilize(now, 2, 3, []Recommendation{{At: now.Add(-time.Minute), Replicas: 4}}, Behavior(&autoscalingv2.HorizontalPodAutoscalerBehavior{}, DefaultDownscaleStabilization)); got != 3 {
		t.Errorf("the same with a behavior: %d, want 3", got)
	}

	for _, c := range []struct {
		name                               string
		current, desired, minR, maxR, want int32
		reason                             string
	}{
		{name: "from 1, at most 4 (the behavior's 4 pods per 15s would allow 5)", current: 1, desired: 5, minR: 1, maxR: 10, want: 4, reason: "ScaleUpLimit"},
		{name: "from 3, at most 6 (TestUpscaleCap's HPA without its rules)", current: 3, desired: 24, minR: 1, maxR: 100, want: 6, reason: "ScaleUpLimit"},
		{name: "maxReplicas under the scale-up limit (TestNoBackoffUpscaleCMNoBackoffCpu)", current: 3, desired: 7, minR: 1, maxR: 5, want: 5, reason: "TooManyReplicas"},
		{name: "within range", current: 3, desired: 5, minR: 1, maxR: 10, want: 5, reason: "DesiredWithinRange"},
		{name: "no limit down", current: 10, desired: 2, minR: 1, maxR: 10, want: 2, reason: "DesiredWithinRange"},
		{name: "minReplicas", current: 3, desired: 1, minR: 2, maxR: 10, want: 2, reason: "TooFewReplicas"},
	} {
		if got, reason := LimitWithoutBehavior(c.current, c.desired, c.minR, c.maxR); got != c.want || reason != c.reason {
			t.Errorf("%s: %d %s, want %d %s", c.name, got, reason, c.want, c.reason)
		}
	}
}
