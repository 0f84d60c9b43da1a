package autoscaling

import (
	"context"
	"fmt"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// Reader is what an explanation reads: the HPA, its scale target and pods
// from the API server, and the values the metrics APIs serve the HPA.
type Reader interface {
	HPA(ctx context.Context, namespace, name string) (*autoscalingv2.HorizontalPodAutoscaler, error)
	// Scale is the target's scale subresource.
	Scale(ctx context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference) (ScaleInfo, error)
	Pods(ctx context.Context, namespace string, selector labels.Selector) ([]*corev1.Pod, error)
	// ResourceMetric is each pod's usage (one container's when container
	// is set), from metrics.k8s.io.
	ResourceMetric(ctx context.Context, namespace string, selector labels.Selector, resource corev1.ResourceName, container string) (map[string]Sample, error)
	// PodsMetric is each pod's value, from custom.metrics.k8s.io.
	PodsMetric(ctx context.Context, namespace string, selector labels.Selector, metric autoscalingv2.MetricIdentifier) (map[string]Sample, error)
	// ObjectMetric is an object's value, from custom.metrics.k8s.io.
	ObjectMetric(ctx context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference, metric autoscalingv2.MetricIdentifier) (int64, error)
	// ExternalMetric is the sum of the matching values, from
	// external.metrics.k8s.io.
	ExternalMetric(ctx context.Context, namespace string, metric autoscalingv2.MetricIdentifier) (int64, error)
}

// ScaleInfo is what the HPA reads from its target's scale subresource.
type ScaleInfo struct {
	Replicas, StatusReplicas int32
	Selector                 string
}

// Options are the controller's settings an explanation assumes.
type Options struct {
	// Tolerance is the controller's (--horizontal-pod-autoscaler-tolerance);
	// an HPA's own behavior tolerance takes precedence.
	Tolerance Tolerance
	Timing    Timing
	// DownscaleStabilization is the controller's default scale-down window.
	DownscaleStabilization time.Duration
	// History holds the HPA's recent recommendations and Events the
	// target's recent changes, reconstructed from recorded series; without
	// them the windows and rates see nothing earlier.
	History       []Recommendation
	Events        []ScaleEvent
	Reconstructed bool
}

// Explanation is why an HPA wants the replicas it wants.
type Explanation struct {
	Namespace string          `json:"namespace"`
	Name      string          `json:"name"`
	At        time.Time       `json:"at"`
	Verdict   string          `json:"verdict"`
	Current   int32           `json:"currentReplicas"`
	Min       int32           `json:"minReplicas"`
	Max       int32           `json:"maxReplicas"`
	Selector  string          `json:"selector,omitempty"`
	Metrics   []MetricExplain `json:"metrics,omitempty"`
	// Proposal is the highest metric proposal, Stabilized after the
	// windows, Desired after the rates and min/max.
	Proposal        int32  `json:"proposal"`
	Winner          string `json:"winner,omitempty"`
	Stabilized      int32  `json:"stabilized"`
	StabilizeReason string `json:"stabilizeReason,omitempty"`
	Desired         int32  `json:"desiredReplicas"`
	LimitReason     string `json:"limitReason"`
	// HistoryReconstructed says the stabilization and rate limits saw
	// recommendations and changes rebuilt from recorded series, not the
	// controller's own memory; false means they saw none.
	HistoryReconstructed bool `json:"historyReconstructed"`
	// Past says the target's replicas and pods are those recorded at At,
	// not read live; the HPA's spec is today's either way.
	Past bool `json:"past,omitempty"`
	// recommended says Proposal is a recommendation the controller keeps
	// for its stabilization windows (it keeps none when it held early).
	recommended bool
	// withoutBehavior says the HPA sets no spec.behavior, so the
	// controller's older limits applied (LimitWithoutBehavior).
	withoutBehavior bool
}

// MetricExplain is one metric of the HPA.
type MetricExplain struct {
	Name    string        `json:"name"`
	Type    string        `json:"type"`
	Target  string        `json:"target"`
	Verdict MetricVerdict `json:"verdict"`
	Error   string        `json:"error,omitempty"`
}

// Explain replays the HPA controller's decision for namespace/name.
func Explain(ctx context.Context, r Reader, namespace, name string, o Options) (Explanation, error) {
	h, err := r.HPA(ctx, namespace, name)
	if err != nil {
		return Explanation{}, err
	}
	e := Explanation{Namespace: namespace, Name: name, At: o.Timing.Now, Max: h.Spec.MaxReplicas, Min: 1, HistoryReconstructed: o.Reconstructed}
	if h.Spec.MinReplicas != nil {
		e.Min = *h.Spec.MinReplicas
	}
	scale, err := r.Scale(ctx, namespace, h.Spec.ScaleTargetRef)
	if err != nil {
		return e, fmt.Errorf("scale of %s %s: %w", h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name, err)
	}
	current, selector := scale.Replicas, scale.Selector
	e.Current, e.Selector = current, selector
	switch {
	case current == 0 && e.Min != 0:
		e.Desired, e.LimitReason, e.Verdict = 0, "ScalingDisabled", "scaling is disabled: the target has 0 replicas (scale it up to turn the HPA back on)"
		return e, nil
	case current > e.Max:
		e.Desired, e.LimitReason, e.Verdict = e.Max, "TooManyReplicas", fmt.Sprintf("scale from %d to %d: the target has more replicas than maxReplicas", current, e.Max)
		return e, nil
	case current < e.Min:
		e.Desired, e.LimitReason, e.Verdict = e.Min, "TooFewReplicas", fmt.Sprintf("scale from %d to %d: the target has fewer replicas than minReplicas", current, e.Min)
		return e, nil
	}
	sel, err := labels.Parse(selector)
	if err != nil || selector == "" {
		return e, fmt.Errorf("the target's scale selector %q: %v", selector, err)
	}
	b := Behavior(h.Spec.Behavior, o.DownscaleStabilization)
	tol := hpaTolerance(b, o.Tolerance)
	e.metrics(ctx, r, h, scale, sel, tol, o.Timing)
	if held, err := e.choose(); held || err != nil {
		return e, err
	}
	e.recommended = true
	if h.Spec.Behavior == nil {
		e.withoutBehavior = true
		e.Stabilized, e.StabilizeReason = StabilizeWithoutBehavior(o.Timing.Now, e.Proposal, o.History, o.DownscaleStabilization)
		e.Desired, e.LimitReason = LimitWithoutBehavior(current, e.Stabilized, e.Min, e.Max)
	} else {
		e.Stabilized, e.StabilizeReason = Stabilize(o.Timing.Now, current, e.Proposal, o.History, b)
		e.Desired, e.LimitReason = Limit(o.Timing.Now, current, e.Stabilized, e.Min, e.Max, o.Events, b)
	}
	e.Verdict = e.verdict()
	return e, nil
}

// hpaTolerance is the HPA's own tolerance where its behavior sets one.
func hpaTolerance(b autoscalingv2.HorizontalPodAutoscalerBehavior, t Tolerance) Tolerance {
	if b.ScaleUp.Tolerance != nil {
		t.Up = b.ScaleUp.Tolerance.AsApproximateFloat64()
	}
	if b.ScaleDown.Tolerance != nil {
		t.Down = b.ScaleDown.Tolerance.AsApproximateFloat64()
	}
	return t
}

// metrics replays each of the HPA's metrics.
func (e *Explanation) metrics(ctx context.Context, r Reader, h *autoscalingv2.HorizontalPodAutoscaler, scale ScaleInfo, sel labels.Selector, tol Tolerance, t Timing) {
	var pods []*corev1.Pod
	var podsErr error
	listed := false
	podList := func() ([]*corev1.Pod, error) {
		if !listed {
			pods, podsErr = r.Pods(ctx, e.Namespace, sel)
			listed = true
		}
		return pods, podsErr
	}
	for _, spec := range h.Spec.Metrics {
		name, target := specTarget(spec)
		m := MetricExplain{Name: name, Type: string(spec.Type), Target: describeTarget(target)}
		v, err := e.metric(ctx, r, spec, target, scale, sel, tol, t, podList)
		m.Verdict = v
		if err != nil {
			m.Error = err.Error()
		}
		e.Metrics = append(e.Metrics, m)
	}
}

// metric replays one metric.
func (e *Explanation) metric(ctx context.Context, r Reader, spec autoscalingv2.MetricSpec, target autoscalingv2.MetricTarget, scale ScaleInfo, sel labels.Selector, tol Tolerance, t Timing, podList func() ([]*corev1.Pod, error)) (MetricVerdict, error) {
	switch spec.Type {
	case autoscalingv2.ResourceMetricSourceType, autoscalingv2.ContainerResourceMetricSourceType:
		resource, container := corev1.ResourceName(""), ""
		switch {
		case spec.Resource != nil:
			resource = spec.Resource.Name
		case spec.ContainerResource != nil:
			resource, container = spec.ContainerResource.Name, spec.ContainerResource.Container
		default:
			return MetricVerdict{}, fmt.Errorf("%s metric without its resource field", spec.Type)
		}
		pods, err := podList()
		if err != nil {
			return MetricVerdict{}, err
		}
		samples, err := r.ResourceMetric(ctx, e.Namespace, sel, resource, container)
		if err != nil {
			return MetricVerdict{}, err
		}
		if target.AverageUtilization != nil {
			return ResourceUtilization(e.Current, pods, samples, resource, container, *target.AverageUtilization, tol, t)
		}
		if target.AverageValue != nil {
			return AverageValue(e.Current, pods, samples, resource, target.AverageValue.MilliValue(), tol, t)
		}
	case autoscalingv2.PodsMetricSourceType:
		if spec.Pods == nil {
			return MetricVerdict{}, fmt.Errorf("%s metric without its pods field", spec.Type)
		}
		pods, err := podList()
		if err != nil {
			return MetricVerdict{}, err
		}
		samples, err := r.PodsMetric(ctx, e.Namespace, sel, spec.Pods.Metric)
		if err != nil {
			return MetricVerdict{}, err
		}
		if target.AverageValue != nil {
			return AverageValue(e.Current, pods, samples, "", target.AverageValue.MilliValue(), tol, t)
		}
	case autoscalingv2.ObjectMetricSourceType, autoscalingv2.ExternalMetricSourceType:
		return e.total(ctx, r, spec, target, scale, tol, podList)
	}
	return MetricVerdict{}, fmt.Errorf("%s metric with target %s: not a combination the HPA controller accepts", spec.Type, describeTarget(target))
}

// total replays an Object or External metric.
func (e *Explanation) total(ctx context.Context, r Reader, spec autoscalingv2.MetricSpec, target autoscalingv2.MetricTarget, scale ScaleInfo, tol Tolerance, podList func() ([]*corev1.Pod, error)) (MetricVerdict, error) {
	var usage int64
	var err error
	switch {
	case spec.Object != nil:
		usage, err = r.ObjectMetric(ctx, e.Namespace, spec.Object.DescribedObject, spec.Object.Metric)
	case spec.External != nil:
		usage, err = r.ExternalMetric(ctx, e.Namespace, spec.External.Metric)
	default:
		return MetricVerdict{}, fmt.Errorf("%s metric without its object or external field", spec.Type)
	}
	if err != nil {
		return MetricVerdict{}, err
	}
	switch {
	case target.Value != nil:
		pods, err := podList()
		if err != nil {
			return MetricVerdict{}, err
		}
		return Value(e.Current, pods, usage, target.Value.MilliValue(), tol)
	case target.AverageValue != nil:
		return AverageOfTotal(scale.StatusReplicas, usage, target.AverageValue.MilliValue(), tol)
	}
	return MetricVerdict{}, fmt.Errorf("%s metric with target %s: not a combination the HPA controller accepts", spec.Type, describeTarget(target))
}

// choose takes the highest proposal, as the controller does, and fails
// as it does: when every metric failed, or when some failed and the rest
// propose fewer replicas than now.
func (e *Explanation) choose() (held bool, err error) {
	invalid := 0
	var first string
	for _, m := range e.Metrics {
		if m.Error != "" {
			if invalid == 0 {
				first = m.Name + ": " + m.Error
			}
			invalid++
			continue
		}
		if e.Winner == "" || m.Verdict.Proposal > e.Proposal {
			e.Proposal, e.Winner = m.Verdict.Proposal, m.Name
		}
	}
	if invalid > 0 && (invalid >= len(e.Metrics) || e.Proposal < e.Current) {
		e.Desired, e.LimitReason = e.Current, "FailedGetMetrics"
		e.Verdict = fmt.Sprintf("held at %d: %d of %d metrics could not be read (%s), and the HPA does not scale down on the rest", e.Current, invalid, len(e.Metrics), first)
		return true, nil
	}
	if len(e.Metrics) == 0 {
		return false, fmt.Errorf("the HPA has no metrics")
	}
	return false, nil
}

// verdict says the decision in words, its reason first.
func (e *Explanation) verdict() string {
	var winner MetricVerdict
	for _, m := range e.Metrics {
		if m.Name == e.Winner && m.Error == "" {
			winner = m.Verdict
		}
	}
	why := e.Winner + ": " + winner.Reason
	if e.StabilizeReason != "" {
		why += "; " + e.StabilizeReason
	}
	switch e.LimitReason {
	case "TooManyReplicas":
		why += fmt.Sprintf("; capped at maxReplicas %d", e.Max)
	case "TooFewReplicas":
		why += fmt.Sprintf("; raised to minReplicas %d", e.Min)
	case "ScaleUpLimit":
		if e.withoutBehavior {
			why += fmt.Sprintf("; without a behavior, a scale-up goes at most to twice the replicas or 4, so %d now", e.Desired)
		} else {
			why += fmt.Sprintf("; the scaling policies allow %d now", e.Desired)
		}
	case "ScaleDownLimit":
		why += fmt.Sprintf("; the scaling policies allow %d now", e.Desired)
	}
	if e.Desired == e.Current {
		return fmt.Sprintf("held at %d: %s", e.Current, why)
	}
	return fmt.Sprintf("scale from %d to %d: %s", e.Current, e.Desired, why)
}

// describeTarget is a target in the HPA's own words.
func describeTarget(t autoscalingv2.MetricTarget) string {
	switch {
	case t.AverageUtilization != nil:
		return fmt.Sprintf("%d%% average utilization", *t.AverageUtilization)
	case t.AverageValue != nil:
		return "average value " + t.AverageValue.String()
	case t.Value != nil:
		return "value " + t.Value.String()
	}
	return string(t.Type)
}
