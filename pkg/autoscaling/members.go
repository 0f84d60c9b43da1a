package autoscaling

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/metrics-gateway/metrics-gateway/pkg/pods"
)

// The pods an HPA selects, recorded each round so that an explanation of a
// past time (explain --at) sees the pods the controller saw then, deleted
// ones included. Series exist only while the pod is selected; when a pod
// goes, the scrape writes their staleness markers.
const (
	PodReady      = "metrics_gateway_autoscaler_pod_ready"
	PodStartTime  = "metrics_gateway_autoscaler_pod_start_time_seconds"
	PodReadySince = "metrics_gateway_autoscaler_pod_ready_transition_time_seconds"
	labelPod      = "pod"
	// MemberPrefix is the self job's filter for these series.
	MemberPrefix = "metrics_gateway_autoscaler_"
)

var (
	memberLabels   = []string{labelNamespace, labelHPA, labelPod}
	podReadyDesc   = prometheus.NewDesc(PodReady, "1 when a running pod the autoscaler selects is Ready, else 0.", memberLabels, nil)
	podStartDesc   = prometheus.NewDesc(PodStartTime, "Start time of a running pod the autoscaler selects, in unix seconds.", memberLabels, nil)
	podReadyAtDesc = prometheus.NewDesc(PodReadySince, "Last transition of the Ready condition of a running pod the autoscaler selects, in unix seconds.", memberLabels, nil)
)

// ScaleReader reads a scale target's subresource; *APIReader is one.
type ScaleReader interface {
	Scale(ctx context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference) (ScaleInfo, error)
}

// Selectors caches each scale target's pod selector, as the HPA controller
// reads it from the scale subresource, for TTL. Safe for concurrent use.
type Selectors struct {
	Scales ScaleReader
	TTL    time.Duration
	mu     sync.Mutex
	cached map[selectorKey]cachedSelector
}

type selectorKey struct {
	namespace string
	ref       autoscalingv2.CrossVersionObjectReference
}

type cachedSelector struct {
	sel labels.Selector
	at  time.Time
}

// Selector is the target's pod selector. A failed read is logged and
// answered with the last known selector, if any.
func (s *Selectors) Selector(ctx context.Context, namespace string, ref autoscalingv2.CrossVersionObjectReference) (labels.Selector, bool) {
	k := selectorKey{namespace, ref}
	s.mu.Lock()
	c, ok := s.cached[k]
	s.mu.Unlock()
	if ok && time.Since(c.at) < s.TTL {
		return c.sel, true
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	info, err := s.Scales.Scale(ctx, namespace, ref)
	var sel labels.Selector
	if err == nil {
		sel, err = labels.Parse(info.Selector)
	}
	if err != nil || info.Selector == "" {
		klog.V(2).InfoS("Cannot read an autoscaler's scale target selector", "namespace", namespace, "target", ref.Name, "err", err)
		return c.sel, ok
	}
	s.mu.Lock()
	if s.cached == nil {
		s.cached = map[selectorKey]cachedSelector{}
	}
	s.cached[k] = cachedSelector{sel: sel, at: time.Now()}
	s.mu.Unlock()
	return sel, true
}

// collectMembers sends the series of the running pods h selects.
func (c Collector) collectMembers(ch chan<- prometheus.Metric, h *autoscalingv2.HorizontalPodAutoscaler) {
	sel, ok := c.Selectors.Selector(context.Background(), h.Namespace, h.Spec.ScaleTargetRef)
	if !ok {
		return
	}
	objs, err := c.Pods.ByNamespace(h.Namespace).List(sel)
	if err != nil {
		return
	}
	for _, o := range objs {
		p, ok := o.(*pods.Pod)
		if !ok {
			continue
		}
		lv := []string{h.Namespace, h.Name, p.Name}
		ready := 0.0
		if p.Ready == corev1.ConditionTrue {
			ready = 1
		}
		ch <- prometheus.MustNewConstMetric(podReadyDesc, prometheus.GaugeValue, ready, lv...)
		if !p.StartTime.IsZero() {
			ch <- prometheus.MustNewConstMetric(podStartDesc, prometheus.GaugeValue, float64(p.StartTime.Unix()), lv...)
		}
		if !p.ReadySince.IsZero() {
			ch <- prometheus.MustNewConstMetric(podReadyAtDesc, prometheus.GaugeValue, float64(p.ReadySince.Unix()), lv...)
		}
	}
}
