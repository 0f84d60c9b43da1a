package autoscaling

import (
	"fmt"
	"math"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
)

// The HPA-level steps after the metrics' proposals, as the controller's
// normalizeDesiredReplicasWithBehaviors takes them: the stabilization
// windows over recent recommendations, then the scaling policies' rate
// limits and minReplicas/maxReplicas. The controller keeps its
// recommendations and scale events in memory only; a replay gets them
// reconstructed from the recorded history, and says so.

// Recommendation is an earlier proposal of the HPA, before its limits.
type Recommendation struct {
	At       time.Time
	Replicas int32
}

// ScaleEvent is an earlier change of the target's replicas: positive up,
// negative down.
type ScaleEvent struct {
	At     time.Time
	Change int32
}

// DefaultDownscaleStabilization is kube-controller-manager's
// --horizontal-pod-autoscaler-downscale-stabilization.
const DefaultDownscaleStabilization = 5 * time.Minute

// Behavior is an HPA's behavior with autoscaling/v2's defaults filled in:
// scale up at most 4 pods or 100% per 15 s, whichever is more, without a
// window; scale down 100% per 15 s after the downscale window.
func Behavior(b *autoscalingv2.HorizontalPodAutoscalerBehavior, downscale time.Duration) autoscalingv2.HorizontalPodAutoscalerBehavior {
	out := autoscalingv2.HorizontalPodAutoscalerBehavior{}
	if b != nil {
		out = *b.DeepCopy()
	}
	maxChange := autoscalingv2.MaxChangePolicySelect
	if out.ScaleUp == nil {
		out.ScaleUp = &autoscalingv2.HPAScalingRules{Policies: []autoscalingv2.HPAScalingPolicy{
			{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
			{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
		}}
	}
	if out.ScaleDown == nil {
		out.ScaleDown = &autoscalingv2.HPAScalingRules{Policies: []autoscalingv2.HPAScalingPolicy{
			{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
		}}
	}
	if out.ScaleUp.StabilizationWindowSeconds == nil {
		zero := int32(0)
		out.ScaleUp.StabilizationWindowSeconds = &zero
	}
	if out.ScaleDown.StabilizationWindowSeconds == nil {
		w := int32(downscale.Seconds())
		out.ScaleDown.StabilizationWindowSeconds = &w
	}
	for _, r := range []*autoscalingv2.HPAScalingRules{out.ScaleUp, out.ScaleDown} {
		if r.SelectPolicy == nil {
			r.SelectPolicy = &maxChange
		}
	}
	return out
}

// Stabilize is the controller's stabilization: the proposal, held no lower
// than the lowest recommendation inside the scale-up window and no higher
// than the highest inside the scale-down window, with current replicas in
// between. It says what held it, "" when nothing did.
func Stabilize(now time.Time, current, proposal int32, history []Recommendation, b autoscalingv2.HorizontalPodAutoscalerBehavior) (int32, string) {
	upWindow := time.Duration(*b.ScaleUp.StabilizationWindowSeconds) * time.Second
	downWindow := time.Duration(*b.ScaleDown.StabilizationWindowSeconds) * time.Second
	up, down := proposal, proposal
	for _, r := range history {
		if r.At.After(now.Add(-upWindow)) {
			up = min(up, r.Replicas)
		}
		if r.At.After(now.Add(-downWindow)) {
			down = max(down, r.Replicas)
		}
	}
	out := min(max(current, up), down)
	switch {
	case out == proposal:
		return out, ""
	case proposal < current:
		return out, fmt.Sprintf("scale-down stabilization: the highest recommendation of the last %v was %d", downWindow, down)
	default:
		return out, fmt.Sprintf("scale-up stabilization: the lowest recommendation of the last %v was %d", upWindow, up)
	}
}

// Limit applies the scaling policies' rates and minReplicas/maxReplicas to
// a stabilized recommendation, as convertDesiredReplicasWithBehaviorRate:
// it returns the replicas and the controller's ScalingLimited reason
// (DesiredWithinRange, ScaleUpLimit, TooManyReplicas, ScaleDownLimit or
// TooFewReplicas).
func Limit(now time.Time, current, desired, minReplicas, maxReplicas int32, events []ScaleEvent, b autoscalingv2.HorizontalPodAutoscalerBehavior) (int32, string) {
	switch {
	case desired > current:
		limit := max(policyLimit(now, current, events, b.ScaleUp, true), current)
		if maxReplicas > limit {
			return min(desired, limit), pick(desired > limit, "ScaleUpLimit")
		}
		return min(desired, maxReplicas), pick(desired > maxReplicas, "TooManyReplicas")
	case desired < current:
		limit := min(policyLimit(now, current, events, b.ScaleDown, false), current)
		if minReplicas < limit {
			return max(desired, limit), pick(desired < limit, "ScaleDownLimit")
		}
		return max(desired, minReplicas), pick(desired < minReplicas, "TooFewReplicas")
	}
	return desired, "DesiredWithinRange"
}

// An HPA without spec.behavior takes the controller's older path
// (normalizeDesiredReplicas), not its behavior defaults: one window, the
// downscale stabilization, over recommendations in either direction, and a
// scale-up limit of twice the current replicas, or 4, per sync, with no
// period and no limit down.

// StabilizeWithoutBehavior is that path's stabilizeRecommendation: the
// highest of the proposal and the recommendations inside the window.
func StabilizeWithoutBehavior(now time.Time, proposal int32, history []Recommendation, window time.Duration) (int32, string) {
	out := proposal
	for _, r := range history {
		if !r.At.Before(now.Add(-window)) {
			out = max(out, r.Replicas)
		}
	}
	if out == proposal {
		return out, ""
	}
	return out, fmt.Sprintf("scale-down stabilization: the highest recommendation of the last %v was %d", window, out)
}

// LimitWithoutBehavior is that path's convertDesiredReplicasWithRules:
// minReplicas, then the lower of maxReplicas and the scale-up limit.
func LimitWithoutBehavior(current, desired, minReplicas, maxReplicas int32) (int32, string) {
	upLimit := scaleUpLimitWithoutBehavior(current)
	if desired < minReplicas {
		return minReplicas, "TooFewReplicas"
	}
	if maxReplicas > upLimit {
		return min(desired, upLimit), pick(desired > upLimit, "ScaleUpLimit")
	}
	return min(desired, maxReplicas), pick(desired > maxReplicas, "TooManyReplicas")
}

// scaleUpLimitWithoutBehavior is the controller's calculateScaleUpLimit.
func scaleUpLimitWithoutBehavior(current int32) int32 {
	return int32(math.Max(2*float64(current), 4))
}

func pick(limited bool, reason string) string {
	if limited {
		return reason
	}
	return "DesiredWithinRange"
}

// policyLimit is the farthest the policies allow from the replicas at the
// start of each policy's period (current, less the changes inside it):
// the largest change with selectPolicy Max, the smallest with Min, none
// when Disabled.
func policyLimit(now time.Time, current int32, events []ScaleEvent, rules *autoscalingv2.HPAScalingRules, up bool) int32 {
	if *rules.SelectPolicy == autoscalingv2.DisabledPolicySelect {
		return current
	}
	// Up, Max picks the highest limit; down, Max picks the lowest.
	highest := (*rules.SelectPolicy == autoscalingv2.MaxChangePolicySelect) == up
	result := int32(math.MaxInt32)
	if highest {
		result = math.MinInt32
	}
	for _, p := range rules.Policies {
		var added, removed int32
		for _, e := range events {
			if e.At.After(now.Add(-time.Duration(p.PeriodSeconds) * time.Second)) {
				if e.Change > 0 {
					added += e.Change
				} else {
					removed -= e.Change
				}
			}
		}
		start := current - added + removed
		var proposed int32
		switch {
		case p.Type == autoscalingv2.PodsScalingPolicy && up:
			proposed = start + p.Value
		case p.Type == autoscalingv2.PodsScalingPolicy:
			proposed = start - p.Value
		case up:
			proposed = int32(math.Ceil(float64(start) * (1 + float64(p.Value)/100)))
		default:
			proposed = int32(float64(start) * (1 - float64(p.Value)/100))
		}
		if highest {
			result = max(result, proposed)
		} else {
			result = min(result, proposed)
		}
	}
	return result
}
