package autoscaling

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	autoscalinglisters "k8s.io/client-go/listers/autoscaling/v2"
	"k8s.io/client-go/tools/cache"
	"k8s.io/metrics/pkg/apis/custom_metrics"
	"k8s.io/metrics/pkg/apis/external_metrics"
	"sigs.k8s.io/custom-metrics-apiserver/pkg/provider"

	"github.com/metrics-gateway/metrics-gateway/pkg/pods"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

type fakeTargets struct{ replicas *int32 }

func (f fakeTargets) Scale(context.Context, string, autoscalingv2.CrossVersionObjectReference) (ScaleInfo, error) {
	return ScaleInfo{Replicas: *f.replicas, StatusReplicas: *f.replicas, Selector: "app=web"}, nil
}

func (fakeTargets) ResourceOf(autoscalingv2.CrossVersionObjectReference) (schema.GroupResource, error) {
	return schema.GroupResource{Group: "apps", Resource: "deployments"}, nil
}

// fakeCustom serves each pod's http_requests at a time, in milli-units.
type fakeCustom struct{ value func(ts time.Time) int64 }

func (f fakeCustom) ObjectsAt(_ context.Context, ts time.Time, _ string, names []string, _ provider.CustomMetricInfo, _ labels.Selector) (*custom_metrics.MetricValueList, error) {
	l := &custom_metrics.MetricValueList{}
	for _, n := range names {
		l.Items = append(l.Items, custom_metrics.MetricValue{DescribedObject: custom_metrics.ObjectReference{Name: n}, Value: *resource.NewMilliQuantity(f.value(ts), resource.DecimalSI), Timestamp: metav1.NewTime(ts)})
	}
	return l, nil
}

func (fakeCustom) ObjectAt(context.Context, time.Time, types.NamespacedName, provider.CustomMetricInfo, labels.Selector) (*custom_metrics.MetricValue, error) {
	return nil, errors.New("no object metrics")
}

func (fakeCustom) ExternalAt(context.Context, time.Time, string, labels.Selector, string) (*external_metrics.ExternalMetricValueList, error) {
	return nil, errors.New("no external metrics")
}

func runningPod(name string, started time.Time) *pods.Pod {
	return &pods.Pod{
		PartialObjectMetadata: metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name, Labels: map[string]string{"app": "web"}}},
		Phase:                 corev1.PodRunning, Ready: corev1.ConditionTrue, ReadySince: metav1.NewTime(started), StartTime: metav1.NewTime(started),
		Containers: []pods.Container{{Name: "app", CPURequest: 100, MemoryRequest: -1}},
	}
}

// TestRecordedHistory runs the recorder round by round beside explanations
// taken live, then explains the same times again from the recorded
// history alone (--at): the decisions, their reasons and the pods are the
// same, a pod deleted since included, and the scale-down held by the
// stabilization window is held because of the recorded recommendations.
func TestRecordedHistory(t *testing.T) {
	store, err := storage.Open(storage.Options{Path: t.TempDir()}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	hpaIndex := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	_ = hpaIndex.Add(webHPA(requests10))
	podIndex := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	at := func(i int) time.Time { return base.Add(time.Duration(i) * 15 * time.Second) }
	for _, n := range []string{"web-a", "web-b"} {
		_ = podIndex.Add(runningPod(n, base.Add(-time.Hour)))
	}
	replicas := int32(2)
	now := base
	// Per pod: 8 (ratio 0.8, held at 2), then 20 (scale to 4), 10 at 4
	// pods (within the tolerance), then 2 (held by the 5m window).
	value := func(ts time.Time) int64 {
		switch i := int(ts.Sub(base) / (15 * time.Second)); {
		case i < 3:
			return 8000
		case i == 3:
			return 20000
		case i < 10:
			return 10000
		}
		return 2000
	}
	src := &Sources{
		HPAs:      autoscalinglisters.NewHorizontalPodAutoscalerLister(hpaIndex),
		PodLister: cache.NewGenericLister(podIndex, schema.GroupResource{Resource: "pods"}),
		Targets:   fakeTargets{&replicas},
		Custom:    fakeCustom{value},
		History:   &History{Q: store, Timeout: 10 * time.Second, Job: "metrics-gateway", Instance: "gw-0"},
		Now:       func() time.Time { return now },
	}
	rec := &Recorder{Sources: src, Options: ControllerDefaults(), Interval: 15 * time.Second, Append: store.Appendable()}
	ctx := context.Background()
	live := map[int]Explanation{}
	for i := 0; i <= 20; i++ {
		now = at(i)
		switch i {
		case 4: // the controller acted on round 3
			replicas = 4
			_ = podIndex.Add(runningPod("web-c", now))
			_ = podIndex.Add(runningPod("web-d", now))
		case 14:
			_ = podIndex.Delete(runningPod("web-d", now))
		}
		e, err := src.Explain(ctx, "shop", "web", now, rec.Options)
		if err != nil || e.Past {
			t.Fatalf("round %d: live explanation: %v (past %v)", i, err, e.Past)
		}
		live[i] = e
		rec.Round(ctx, now)
	}
	for i, want := range map[int]string{2: "held at 2", 3: "scale from 2 to 4", 5: "held at 4", 12: "scale-down stabilization", 20: "scale-down stabilization"} {
		if !strings.Contains(live[i].Verdict, want) {
			t.Errorf("round %d live: %q, want %q", i, live[i].Verdict, want)
		}
	}
	now = at(20).Add(30 * time.Minute)
	for _, i := range []int{2, 3, 5, 12, 20} {
		past, err := src.Explain(ctx, "shop", "web", at(i), rec.Options)
		if err != nil || !past.Past || !past.HistoryReconstructed {
			t.Fatalf("round %d from history: %v (past %v)", i, err, past.Past)
		}
		if past.Verdict != live[i].Verdict || past.Current != live[i].Current || past.Desired != live[i].Desired || !slices.Equal(podNames(past), podNames(live[i])) {
			t.Errorf("round %d from history:\n got  %d→%d %v %s\n want %d→%d %v %s", i, past.Current, past.Desired, podNames(past), past.Verdict,
				live[i].Current, live[i].Desired, podNames(live[i]), live[i].Verdict)
		}
	}
	if got := podNames(live[12]); !slices.Contains(got, "web-d") {
		t.Errorf("round 12 lists %v, want web-d, deleted since", got)
	}
	if _, err := src.Explain(ctx, "shop", "web", base.Add(-time.Minute), rec.Options); !errors.Is(err, ErrNotRecorded) {
		t.Errorf("before the first round: %v, want ErrNotRecorded", err)
	}
	// Without the recorded recommendations, round 12 would scale down.
	empty := *src
	empty.History = &History{Q: store, Timeout: 10 * time.Second, Job: "metrics-gateway", Instance: "another"}
	if e, _ := empty.Explain(ctx, "shop", "web", at(12), rec.Options); e.Desired == live[12].Desired {
		t.Errorf("round 12 without history: %s; want it not held", e.Verdict)
	}
}

func podNames(e Explanation) []string {
	var out []string
	for _, m := range e.Metrics {
		for _, p := range m.Verdict.Pods {
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return out
}
