package autoscaling

import (
	"context"
	"math"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	promstorage "github.com/prometheus/prometheus/storage"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
)

// Recorder replays every HPA's decision each round, beside the
// controller, and appends what the replay read and proposed to storage at
// the round's time: the history an explanation of a past time, or of a
// stabilization window, is rebuilt from (history.go reads it back). It
// writes to storage itself rather than through the self scrape so that a
// round's samples carry the round's time and are visible at once, and it
// marks the series a round no longer has stale, as a scrape would.
type Recorder struct {
	Sources  *Sources
	Options  Options
	Interval time.Duration
	// Append writes the rounds; they are labelled with the Sources'
	// History's Job and Instance, which read them back.
	Append promstorage.AppendableV2
	// last are the series of the last round, to mark those gone stale.
	last map[string]labels.Labels
}

// Run replays every Interval until ctx is done.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			r.Round(ctx, now)
		}
	}
}

// Round replays every HPA at now and appends the results.
func (r *Recorder) Round(ctx context.Context, now time.Time) {
	hpas, err := r.Sources.HPAs.List(k8slabels.Everything())
	if err != nil {
		return
	}
	b := &roundBuilder{base: []string{"job", r.Sources.History.Job, "instance", r.Sources.History.Instance}, samples: map[string]sample{}}
	for _, h := range hpas {
		c := &capture{}
		e, err := r.Sources.explain(ctx, h.Namespace, h.Name, now, r.Options, c)
		if err != nil && c.scale == nil {
			klog.V(2).InfoS("Cannot replay an autoscaler", "namespace", h.Namespace, "name", h.Name, "err", err)
			continue
		}
		b.add(h, e, c)
	}
	r.append(ctx, now, b.samples)
}

type sample struct {
	ls labels.Labels
	v  float64
}

// roundBuilder gathers a round's samples by series.
type roundBuilder struct {
	base    []string
	samples map[string]sample
}

func (b *roundBuilder) set(v float64, kv ...string) {
	ls := labels.FromStrings(append(append([]string{}, b.base...), kv...)...)
	b.samples[ls.String()] = sample{ls, v}
}

// add records one HPA's round: the target's replicas, the replay's
// proposal and decision, and the pods it read with their readiness, start
// times and requests.
func (b *roundBuilder) add(h *autoscalingv2.HorizontalPodAutoscaler, e Explanation, c *capture) {
	hpa := []string{labelNamespace, h.Namespace, labelHPA, h.Name}
	with := func(name string, kv ...string) []string {
		return append(append([]string{labels.MetricName, name}, hpa...), kv...)
	}
	b.set(float64(c.scale.Replicas), with(TargetReplicas)...)
	if e.Desired != 0 || e.LimitReason != "" {
		b.set(float64(e.Desired), with(ReplayDesired)...)
	}
	if e.recommended {
		b.set(float64(e.Proposal), with(RecommendationReplicas)...)
	}
	for _, p := range c.pods {
		ready, since := 0.0, time.Time{}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady {
				since = cond.LastTransitionTime.Time
				if cond.Status == corev1.ConditionTrue {
					ready = 1
				}
			}
		}
		b.set(ready, with(PodReady, labelPod, p.Name)...)
		if p.Status.StartTime != nil {
			b.set(float64(p.Status.StartTime.Unix()), with(PodStartTime, labelPod, p.Name)...)
		}
		if !since.IsZero() {
			b.set(float64(since.Unix()), with(PodReadySince, labelPod, p.Name)...)
		}
		for _, ctr := range p.Spec.Containers {
			for res, unit := range map[corev1.ResourceName]string{corev1.ResourceCPU: "core", corev1.ResourceMemory: "byte"} {
				if q, ok := ctr.Resources.Requests[res]; ok {
					b.set(float64(q.MilliValue())/1000, labels.MetricName, PodRequests, labelNamespace, p.Namespace, labelPod, p.Name, "container", ctr.Name, "resource", string(res), "unit", unit)
				}
			}
		}
	}
}

// append writes a round, and staleness markers for the series the last
// round had and this one has not.
func (r *Recorder) append(ctx context.Context, now time.Time, samples map[string]sample) {
	app := r.Append.AppenderV2(ctx)
	ts := now.UnixMilli()
	var err error
	for _, s := range samples {
		if _, err = app.Append(0, s.ls, 0, ts, s.v, nil, nil, promstorage.AOptions{}); err != nil {
			break
		}
	}
	for k, ls := range r.last {
		if _, ok := samples[k]; !ok && err == nil {
			_, err = app.Append(0, ls, 0, ts, math.Float64frombits(value.StaleNaN), nil, nil, promstorage.AOptions{})
		}
	}
	if err != nil {
		klog.ErrorS(err, "Cannot record the autoscalers' round")
		_ = app.Rollback()
		return
	}
	if err := app.Commit(); err != nil {
		klog.ErrorS(err, "Cannot record the autoscalers' round")
		return
	}
	r.last = make(map[string]labels.Labels, len(samples))
	for k, s := range samples {
		r.last[k] = s.ls
	}
}

// capture is a Reader that keeps what the replay read of the target and
// its pods.
type capture struct {
	Reader
	scale *ScaleInfo
	pods  []*corev1.Pod
}

func (c *capture) Scale(ctx context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference) (ScaleInfo, error) {
	s, err := c.Reader.Scale(ctx, namespace, ref)
	if err == nil {
		c.scale = &s
	}
	return s, err
}

func (c *capture) Pods(ctx context.Context, namespace string, selector k8slabels.Selector) ([]*corev1.Pod, error) {
	p, err := c.Reader.Pods(ctx, namespace, selector)
	if err == nil {
		c.pods = p
	}
	return p, err
}

// ControllerDefaults are kube-controller-manager's autoscaling settings,
// which the gateway's replay assumes.
func ControllerDefaults() Options {
	return Options{Tolerance: DefaultTolerance, Timing: DefaultTiming(time.Time{}), DownscaleStabilization: DefaultDownscaleStabilization}
}

// Explain explains the HPA at at (zero: now) from the gateway's own
// sources, with the recorded history; at more than a second ago reads
// the target's replicas and pods as recorded at the last round then.
func (s *Sources) Explain(ctx context.Context, namespace, name string, at time.Time, o Options) (Explanation, error) {
	return s.explain(ctx, namespace, name, at, o, nil)
}

func (s *Sources) explain(ctx context.Context, namespace, name string, at time.Time, o Options, c *capture) (Explanation, error) {
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	if at.IsZero() {
		at = now
	}
	past := now.Sub(at) > time.Second
	recs, events, err := s.History.Recent(ctx, namespace, name, at)
	if err != nil {
		return Explanation{Namespace: namespace, Name: name, At: at}, err
	}
	o.History, o.Events, o.Reconstructed = recs, events, true
	o.Timing.Now = at
	var r Reader = GatewayReader{Sources: s, Name: name, At: at, Past: past, listed: &listedPods{}}
	if c != nil {
		c.Reader = r
		r = c
	}
	e, err := Explain(ctx, r, namespace, name, o)
	e.Past = past
	return e, err
}
