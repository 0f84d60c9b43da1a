package autoscaling

import (
	"errors"
	"fmt"
	"math"

	corev1 "k8s.io/api/core/v1"
)

// ratioFunc is a per-pod metric's usage ratio and current value over the
// pods' values (milli-units), by pod name.
type ratioFunc func(values map[string]int64) (ratio float64, current int64, err error)

// ResourceUtilization replays a Resource or ContainerResource metric with
// an AverageUtilization target (percent of the pods' requests).
func ResourceUtilization(current int32, pods []*corev1.Pod, samples map[string]Sample, resource corev1.ResourceName, container string, target int32, tol Tolerance, t Timing) (MetricVerdict, error) {
	if target <= 0 {
		return MetricVerdict{}, fmt.Errorf("utilization target %d%% is not positive", target)
	}
	if len(pods) == 0 {
		return MetricVerdict{}, errors.New("no pods selected")
	}
	requests := map[string]int64{}
	for _, p := range pods {
		r, err := Requests(p, container, resource)
		if err != nil {
			return MetricVerdict{}, err
		}
		requests[p.Name] = r
	}
	verdicts := group(pods, samples, resource == corev1.ResourceCPU, t)
	for i := range verdicts {
		verdicts[i].Request = requests[verdicts[i].Name]
	}
	ratio := func(values map[string]int64) (float64, int64, error) {
		var used, requested int64
		for name, v := range values {
			used += v
			requested += requests[name]
		}
		if requested == 0 {
			return 0, 0, errors.New("the pods with values request nothing")
		}
		utilization := used * 100 / requested
		return float64(utilization) / float64(target), utilization, nil
	}
	// On a scale-down a missing pod counts at its request, or at the
	// target when the target is over 100%.
	fill := func(name string) int64 { return requests[name] * int64(max(100, target)) / 100 }
	return replay(current, verdicts, ratio, fill, tol)
}

// AverageValue replays a metric with an AverageValue target (milli-units):
// a Resource metric (resource set; cpu readiness rules apply) or a Pods
// metric (resource empty).
func AverageValue(current int32, pods []*corev1.Pod, samples map[string]Sample, resource corev1.ResourceName, target int64, tol Tolerance, t Timing) (MetricVerdict, error) {
	if target <= 0 {
		return MetricVerdict{}, fmt.Errorf("average target %dm is not positive", target)
	}
	if len(pods) == 0 {
		return MetricVerdict{}, errors.New("no pods selected")
	}
	ratio := func(values map[string]int64) (float64, int64, error) {
		var sum int64
		for _, v := range values {
			sum += v
		}
		avg := sum / int64(len(values))
		return float64(avg) / float64(target), avg, nil
	}
	// On a scale-down a missing pod counts at exactly the target.
	fill := func(string) int64 { return target }
	return replay(current, group(pods, samples, resource == corev1.ResourceCPU, t), ratio, fill, tol)
}

// replay is the controller's two passes over per-pod values: first the
// pods with usable values; then, when pods are missing values or a scale-up
// has unready pods, again with those filled in, holding whenever the second
// pass is within tolerance or turns the direction around.
func replay(current int32, pods []PodVerdict, ratio ratioFunc, fill func(string) int64, tol Tolerance) (MetricVerdict, error) {
	m := MetricVerdict{Pods: pods}
	values := map[string]int64{}
	var unready, missing int
	for _, p := range pods {
		switch p.State {
		case Used:
			values[p.Name] = p.Value
		case Unready:
			unready++
		case Missing:
			missing++
		}
	}
	if len(values) == 0 {
		return m, errNoUsable
	}
	var err error
	if m.Ratio, m.Current, err = ratio(values); err != nil {
		return m, err
	}
	used := len(values)
	upWithUnready := unready > 0 && m.Ratio > 1
	if !upWithUnready && missing == 0 {
		if tol.Within(m.Ratio) {
			m.Proposal, m.Reason = current, fmt.Sprintf("usage ratio %.3f is within the tolerance (%s): hold at %d", m.Ratio, tol, current)
			return m, nil
		}
		m.Proposal = ceil32(m.Ratio * float64(used))
		m.Reason = fmt.Sprintf("usage ratio %.3f × %d pods with values = %d", m.Ratio, used, m.Proposal)
		return m, nil
	}
	m.fill(missing > 0, upWithUnready, fill)
	for _, p := range m.Pods {
		if p.Assumed != nil {
			values[p.Name] = *p.Assumed
		}
	}
	if m.Adjusted, _, err = ratio(values); err != nil {
		return m, err
	}
	return m.second(current, len(values), tol), nil
}

// fill puts in the values the second pass assumes: missing pods at 0 on a
// scale-up and at fill on a scale-down; unready pods at 0 on a scale-up.
func (m *MetricVerdict) fill(missing, upWithUnready bool, fill func(string) int64) {
	for i := range m.Pods {
		p := &m.Pods[i]
		var v int64
		switch {
		case p.State == Missing && missing && m.Ratio < 1:
			v = fill(p.Name)
		case p.State == Missing && missing && m.Ratio > 1, p.State == Unready && upWithUnready:
			v = 0
		default:
			continue
		}
		p.Assumed = &v
	}
}

// second decides after the second pass over n pods.
func (m MetricVerdict) second(current int32, n int, tol Tolerance) MetricVerdict {
	switch {
	case tol.Within(m.Adjusted):
		m.Proposal, m.Reason = current, fmt.Sprintf("usage ratio %.3f, but %.3f with unready and missing pods filled in, within the tolerance (%s): hold at %d", m.Ratio, m.Adjusted, tol, current)
		return m
	case (m.Ratio < 1 && m.Adjusted > 1) || (m.Ratio > 1 && m.Adjusted < 1):
		m.Proposal, m.Reason = current, fmt.Sprintf("usage ratio %.3f, but %.3f with unready and missing pods filled in, the other direction: hold at %d", m.Ratio, m.Adjusted, current)
		return m
	}
	proposal := ceil32(m.Adjusted * float64(n))
	if (m.Adjusted < 1 && proposal > current) || (m.Adjusted > 1 && proposal < current) {
		m.Proposal, m.Reason = current, fmt.Sprintf("usage ratio %.3f with unready and missing pods filled in × %d pods = %d, the other direction from %d: hold", m.Adjusted, n, proposal, current)
		return m
	}
	m.Proposal, m.Reason = proposal, fmt.Sprintf("usage ratio %.3f with unready and missing pods filled in × %d pods = %d", m.Adjusted, n, proposal)
	return m
}

// Value replays an Object or External metric with a Value target: the
// total (milli-units; an External metric's values summed) against the
// target, times the Running and Ready pods when it is outside the
// tolerance, or rounded up alone when the target is scaled to zero.
func Value(current int32, pods []*corev1.Pod, usage, target int64, tol Tolerance) (MetricVerdict, error) {
	if target <= 0 {
		return MetricVerdict{}, fmt.Errorf("value target %dm is not positive", target)
	}
	m := MetricVerdict{Current: usage, Ratio: float64(usage) / float64(target)}
	if current == 0 {
		m.Proposal = ceil32(m.Ratio)
		m.Reason = fmt.Sprintf("scaled to zero: usage ratio %.3f rounded up = %d", m.Ratio, m.Proposal)
		return m, nil
	}
	if tol.Within(m.Ratio) {
		m.Proposal, m.Reason = current, fmt.Sprintf("usage ratio %.3f is within the tolerance (%s): hold at %d", m.Ratio, tol, current)
		return m, nil
	}
	if len(pods) == 0 {
		return m, errors.New("no pods selected")
	}
	ready := 0
	for _, p := range pods {
		v := PodVerdict{Name: p.Name, State: Used}
		if p.Status.Phase != corev1.PodRunning || !podReady(p) {
			v.State, v.Reason = Unready, "not Running and Ready: not counted"
		} else {
			ready++
		}
		m.Pods = append(m.Pods, v)
	}
	m.Proposal = ceil32(m.Ratio * float64(ready))
	m.Reason = fmt.Sprintf("usage ratio %.3f × %d Running and Ready pods = %d", m.Ratio, ready, m.Proposal)
	return m, nil
}

// AverageOfTotal replays an Object or External metric with an AverageValue
// target: the total over the target per pod, against the HPA's status
// replicas.
func AverageOfTotal(statusReplicas int32, usage, target int64, tol Tolerance) (MetricVerdict, error) {
	if target <= 0 || statusReplicas <= 0 {
		return MetricVerdict{}, fmt.Errorf("average target %dm and replicas %d must be positive", target, statusReplicas)
	}
	m := MetricVerdict{Ratio: float64(usage) / (float64(target) * float64(statusReplicas))}
	m.Current = int64(math.Ceil(float64(usage) / float64(statusReplicas)))
	if tol.Within(m.Ratio) {
		m.Proposal, m.Reason = statusReplicas, fmt.Sprintf("usage ratio %.3f is within the tolerance (%s): hold at %d", m.Ratio, tol, statusReplicas)
		return m, nil
	}
	m.Proposal = ceil32(float64(usage) / float64(target))
	m.Reason = fmt.Sprintf("total %dm ÷ %dm per pod = %d", usage, target, m.Proposal)
	return m, nil
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// String is the tolerance as a range, e.g. "0.9 to 1.1".
func (t Tolerance) String() string { return fmt.Sprintf("%.3g to %.3g", 1-t.Down, 1+t.Up) }
