package autoscaling

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"time"

	"github.com/prometheus/prometheus/promql"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// The recorder's series (recorder.go): what its replay, run every round
// beside the controller, proposed and read. They rebuild the controller's
// memory, which it keeps only in its process: the recommendations its
// stabilization windows compare and the changes its rate limits count.
// The pods the replay read are recorded too, so that an explanation of a
// past time (explain --at) sees the pods the controller saw then, deleted
// ones included; a pod's series go stale when a round no longer reads it.
const (
	RecommendationReplicas = "metrics_gateway_autoscaler_recommendation_replicas"
	ReplayDesired          = "metrics_gateway_autoscaler_replay_desired_replicas"
	TargetReplicas         = "metrics_gateway_autoscaler_target_replicas"
	PodReady               = "metrics_gateway_autoscaler_pod_ready"
	PodStartTime           = "metrics_gateway_autoscaler_pod_start_time_seconds"
	PodReadySince          = "metrics_gateway_autoscaler_pod_ready_transition_time_seconds"
	// PodRequests is kube-state-metrics' series of container requests,
	// recorded for the pods HPAs select: what utilization divides by.
	PodRequests = "kube_pod_container_resource_requests"
	labelPod    = "pod"
)

// HistoryWindow is how far back an explanation reads: the longest
// stabilization window autoscaling/v2 allows (3600 s), which also covers
// the longest policy period (1800 s).
const HistoryWindow = time.Hour

// ErrNotRecorded is a past time with no recorded round of the HPA.
var ErrNotRecorded = errors.New("not recorded")

// History reads an HPA's recorded series back from storage.
type History struct {
	Q       storage.Querier
	Timeout time.Duration
	// Job and Instance are the Recorder's: another replica's rounds, or
	// another job's series of the same name, are not this one's.
	Job, Instance string
}

func (h *History) selector(metric, namespace, name string) string {
	hpa := ""
	if name != "" {
		hpa = fmt.Sprintf(",%s=%q", labelHPA, name)
	}
	return fmt.Sprintf("%s{job=%q,instance=%q,%s=%q%s}", metric, h.Job, h.Instance, labelNamespace, namespace, hpa)
}

func (h *History) eval(ctx context.Context, expr string, at time.Time) (promql.Matrix, error) {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout)
	defer cancel()
	v, err := h.Q.Instant(ctx, expr, at, storage.QueryOptions{})
	if err != nil {
		return nil, fmt.Errorf("recorded history: %w", err)
	}
	switch v := v.(type) {
	case promql.Matrix:
		return v, nil
	case promql.Vector:
		m := make(promql.Matrix, len(v))
		for i, s := range v {
			m[i] = promql.Series{Metric: s.Metric, Floats: []promql.FPoint{{T: s.T, F: s.F}}}
		}
		return m, nil
	}
	return nil, fmt.Errorf("recorded history: %s is a %s", expr, v.Type())
}

// TargetReplicas is the target's replicas as the recorder read them at at.
func (h *History) TargetReplicas(ctx context.Context, namespace, name string, at time.Time) (int32, error) {
	m, err := h.eval(ctx, h.selector(TargetReplicas, namespace, name), at)
	if err != nil {
		return 0, err
	}
	if len(m) == 0 || len(m[0].Floats) == 0 {
		return 0, fmt.Errorf("%w: no round of %s/%s before %s (did the HPA exist then, was the gateway running, with --record-autoscalers, and is it inside --storage-retention?)", ErrNotRecorded, namespace, name, at.UTC().Format(time.RFC3339))
	}
	return int32(m[0].Floats[0].F), nil
}

// Members are the running pods the HPA selected at at, rebuilt from the
// recorded readiness and start times.
func (h *History) Members(ctx context.Context, namespace, name string, at time.Time) ([]*corev1.Pod, error) {
	// Only the pods of the last round: after a restart, the series of the
	// pods of the run before have no staleness markers.
	round, err := h.eval(ctx, "timestamp("+h.selector(TargetReplicas, namespace, name)+")", at)
	if err != nil || len(round) == 0 || len(round[0].Floats) == 0 {
		return nil, err
	}
	byName := map[string]*corev1.Pod{}
	var order []string
	for _, metric := range []string{PodReady, PodStartTime, PodReadySince} {
		expr := fmt.Sprintf("%s and on (pod) (timestamp(%s) == %g)", h.selector(metric, namespace, name), h.selector(PodReady, namespace, name), round[0].Floats[0].F)
		m, err := h.eval(ctx, expr, at)
		if err != nil {
			return nil, err
		}
		for _, s := range m {
			pod := s.Metric.Get(labelPod)
			if len(s.Floats) == 0 || pod == "" {
				continue
			}
			p := byName[pod]
			if p == nil {
				if metric != PodReady {
					continue // only pods recorded as selected then
				}
				p = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: pod}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
				byName[pod] = p
				order = append(order, pod)
			}
			setRecorded(p, metric, s.Floats[0].F)
		}
	}
	if err := h.requests(ctx, namespace, at, byName); err != nil {
		return nil, err
	}
	sort.Strings(order)
	out := make([]*corev1.Pod, len(order))
	for i, n := range order {
		out[i] = byName[n]
	}
	return out, nil
}

// requests adds the recorded requests to the pods by name, a container
// per recorded container.
func (h *History) requests(ctx context.Context, namespace string, at time.Time, byName map[string]*corev1.Pod) error {
	m, err := h.eval(ctx, h.selector(PodRequests, namespace, ""), at)
	if err != nil {
		return err
	}
	for _, s := range m {
		p := byName[s.Metric.Get(labelPod)]
		if p == nil || len(s.Floats) == 0 {
			continue
		}
		name := s.Metric.Get("container")
		i := slices.IndexFunc(p.Spec.Containers, func(c corev1.Container) bool { return c.Name == name })
		if i < 0 {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{}}})
			i = len(p.Spec.Containers) - 1
		}
		milli := int64(math.Round(s.Floats[0].F * 1000))
		switch s.Metric.Get("resource") {
		case "cpu":
			p.Spec.Containers[i].Resources.Requests[corev1.ResourceCPU] = *resource.NewMilliQuantity(milli, resource.DecimalSI)
		case "memory":
			p.Spec.Containers[i].Resources.Requests[corev1.ResourceMemory] = *resource.NewMilliQuantity(milli, resource.BinarySI)
		}
	}
	return nil
}

func setRecorded(p *corev1.Pod, metric string, v float64) {
	switch metric {
	case PodReady:
		status := corev1.ConditionFalse
		if v == 1 {
			status = corev1.ConditionTrue
		}
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status}}
	case PodStartTime:
		t := metav1.Unix(int64(v), 0)
		p.Status.StartTime = &t
	case PodReadySince:
		p.Status.Conditions[0].LastTransitionTime = metav1.Unix(int64(v), 0)
	}
}

// Recent is the HPA's recommendations and the target's replica changes in
// the HistoryWindow before at (strictly before: at's own decision is the
// one being explained).
func (h *History) Recent(ctx context.Context, namespace, name string, at time.Time) ([]Recommendation, []ScaleEvent, error) {
	window := fmt.Sprintf("[%ds]", int(HistoryWindow.Seconds()))
	recs, err := h.eval(ctx, h.selector(RecommendationReplicas, namespace, name)+window, at)
	if err != nil {
		return nil, nil, err
	}
	var out []Recommendation
	for _, s := range recs {
		for _, p := range s.Floats {
			if t := time.UnixMilli(p.T); t.Before(at) {
				out = append(out, Recommendation{At: t, Replicas: int32(p.F)})
			}
		}
	}
	targets, err := h.eval(ctx, h.selector(TargetReplicas, namespace, name)+window, at)
	if err != nil {
		return nil, nil, err
	}
	var events []ScaleEvent
	for _, s := range targets {
		for i := 1; i < len(s.Floats); i++ {
			t := time.UnixMilli(s.Floats[i].T)
			if d := int32(s.Floats[i].F - s.Floats[i-1].F); d != 0 && t.Before(at) {
				events = append(events, ScaleEvent{At: t, Change: d})
			}
		}
	}
	return out, events, nil
}
