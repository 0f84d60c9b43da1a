package autoscaling

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"
)

var (
	recommendationDesc = prometheus.NewDesc(RecommendationReplicas, "Replicas the gateway's replay of the HPA controller proposed this round, before stabilization: the controller's own recommendation, which it keeps only in memory.", hpaLabels, nil)
	replayDesiredDesc  = prometheus.NewDesc(ReplayDesired, "Replicas the gateway's replay of the HPA controller decided this round, after stabilization, rates and limits.", hpaLabels, nil)
	replicasDesc       = prometheus.NewDesc(TargetReplicas, "Replicas of the autoscaler's scale target (its scale subresource's spec) as the replay read them this round.", hpaLabels, nil)
)

// Recorder replays every HPA's decision each round, beside the
// controller, so that its recommendations and its target's replicas are
// recorded (Collector exports them): the history an explanation of a past
// time, or of a stabilization window, is rebuilt from.
type Recorder struct {
	Sources  *Sources
	Options  Options
	Interval time.Duration
	mu       sync.Mutex
	last     map[hpaKey]replayed
}

type hpaKey struct{ namespace, name string }

type replayed struct {
	target, desired, recommendation int32
	recommended                     bool
}

// Run replays every Interval until ctx is done.
func (r *Recorder) Run(ctx context.Context) {
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.round(ctx, time.Now())
		}
	}
}

func (r *Recorder) round(ctx context.Context, now time.Time) {
	hpas, err := r.Sources.HPAs.List(labels.Everything())
	if err != nil {
		return
	}
	next := make(map[hpaKey]replayed, len(hpas))
	for _, h := range hpas {
		e, err := r.Sources.Explain(ctx, h.Namespace, h.Name, now, r.Options)
		if err != nil && e.Current == 0 {
			klog.V(2).InfoS("Cannot replay an autoscaler", "namespace", h.Namespace, "name", h.Name, "err", err)
			continue
		}
		next[hpaKey{h.Namespace, h.Name}] = replayed{target: e.Current, desired: e.Desired, recommendation: e.Proposal, recommended: e.recommended}
	}
	r.mu.Lock()
	r.last = next
	r.mu.Unlock()
}

// collect sends the last round's series.
func (r *Recorder) collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.last {
		gauge := func(d *prometheus.Desc, x int32) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(x), k.namespace, k.name)
		}
		gauge(replicasDesc, v.target)
		gauge(replayDesiredDesc, v.desired)
		if v.recommended {
			gauge(recommendationDesc, v.recommendation)
		}
	}
}

// ControllerDefaults are kube-controller-manager's autoscaling settings,
// which the gateway's replay assumes.
func ControllerDefaults() Options {
	return Options{Tolerance: DefaultTolerance, Timing: DefaultTiming(time.Time{}), DownscaleStabilization: DefaultDownscaleStabilization}
}

// Explain explains the HPA at at (zero: now) from the gateway's own
// sources, with the recorded history; at more than two rounds ago reads
// the target's replicas and pods as recorded then.
func (s *Sources) Explain(ctx context.Context, namespace, name string, at time.Time, o Options) (Explanation, error) {
	now := time.Now()
	if at.IsZero() {
		at = now
	}
	past := now.Sub(at) > 2*s.Interval
	recs, events, err := s.History.Recent(ctx, namespace, name, at)
	if err != nil {
		return Explanation{Namespace: namespace, Name: name, At: at}, err
	}
	o.History, o.Events, o.Reconstructed = recs, events, true
	o.Timing.Now = at
	e, err := Explain(ctx, GatewayReader{Sources: s, Name: name, At: at, Past: past}, namespace, name, o)
	e.Past = past
	return e, err
}
