package soak

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/metrics-gateway/metrics-gateway/test/env"
)

// watchEvery is how often the watch looks; the HPA controller syncs every 15s.
const watchEvery = 10 * time.Second

// watch looks at what users of the gateway see, every watchEvery: kubectl
// top, a list of every PodMetrics (what metrics-server users' dashboards
// do), each HPA's condition and the metric it reads through the
// aggregator, and the gateway's memory.
type watch struct {
	e    *env.Env
	hpas []hpaRef
	cg   *env.MemoryCgroup
	phase
}

// phase is what one stretch of watching saw.
type phase struct {
	looks            int
	topLat, listLat  []time.Duration
	maxRSS           int64
	failures         []string
	firstTop         time.Time // first kubectl top that answered
	hpasBack         time.Time // first look at which every HPA read its metric
	hpaOK, hpaChecks int
}

func newWatch(e *env.Env, hpas []hpaRef, cg *env.MemoryCgroup) *watch {
	return &watch{e: e, hpas: hpas, cg: cg}
}

func (w *watch) reset() { w.phase = phase{} }

// run looks every watchEvery until until. With recovering, failures only
// count once kubectl top and every HPA have answered again (the gateway
// was just killed); without, every failure counts.
func (w *watch) run(ctx context.Context, t *testing.T, until time.Time, recovering bool) {
	t.Helper()
	lastLog := time.Now()
	for time.Now().Before(until) {
		next := time.Now().Add(watchEvery)
		if recovering {
			next = time.Now().Add(time.Second) // measure the gap finely
		}
		if err := w.e.Gateway.ExitErr(); err != nil {
			kills, kerr := w.cg.OOMKills()
			t.Fatalf("the gateway ended during the soak: %v (OOM kills in its cgroup: %d %v)\n%s", err, kills, kerr, w.e.Gateway.LogTail(30))
		}
		w.look(ctx, recovering)
		if recovering && !w.hpasBack.IsZero() {
			recovering = false
		}
		if time.Since(lastLog) >= 5*time.Minute {
			t.Logf("%s: %d looks, peak RSS %d MiB, %d failures", time.Now().Format(time.TimeOnly), w.looks, w.maxRSS>>20, len(w.failures))
			lastLog = time.Now()
		}
		time.Sleep(time.Until(next))
	}
}

// look checks everything once.
func (w *watch) look(ctx context.Context, recovering bool) {
	w.looks++
	fail := func(format string, args ...any) {
		if !recovering {
			w.failures = append(w.failures, time.Now().Format(time.TimeOnly)+" "+fmt.Sprintf(format, args...))
		}
	}
	if rss, err := w.e.Gateway.RSS(); err == nil && rss > w.maxRSS {
		w.maxRSS = rss
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	start := time.Now()
	out, err := w.e.Kubectl(cctx, "top", "pods", "-A", "--request-timeout=30s")
	switch {
	case err != nil:
		fail("kubectl top pods -A: %v", err)
	case !strings.Contains(out, "web-"):
		fail("kubectl top pods -A lists no web pod:\n%s", out)
	default:
		w.topLat = append(w.topLat, time.Since(start))
		if w.firstTop.IsZero() {
			w.firstTop = time.Now()
		}
	}
	start = time.Now()
	if _, err := w.e.Client.Discovery().RESTClient().Get().AbsPath("/apis/metrics.k8s.io/v1beta1/pods").DoRaw(cctx); err != nil {
		fail("list every PodMetrics: %v", err)
	} else {
		w.listLat = append(w.listLat, time.Since(start))
	}
	all := true
	for _, h := range w.hpas {
		w.hpaChecks++
		if err := w.hpaReads(cctx, h); err != nil {
			all = false
			fail("HPA %s/%s: %v", h.ns, h.name, err)
			continue
		}
		w.hpaOK++
	}
	if all && w.hpasBack.IsZero() {
		w.hpasBack = time.Now()
	}
}

// hpasRead reports whether every HPA reads its metric now.
func (w *watch) hpasRead(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, h := range w.hpas {
		if w.hpaReads(cctx, h) != nil {
			return false
		}
	}
	return true
}

// hpaReads checks that the HPA's ScalingActive condition is true with a
// current metric, and that the gateway answers the metric it reads now.
func (w *watch) hpaReads(ctx context.Context, h hpaRef) error {
	hpa, err := w.e.Client.AutoscalingV2().HorizontalPodAutoscalers(h.ns).Get(ctx, h.name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if len(hpa.Status.CurrentMetrics) == 0 {
		return fmt.Errorf("no current metric")
	}
	for _, c := range hpa.Status.Conditions {
		if c.Type == autoscalingv2.ScalingActive && c.Status != corev1.ConditionTrue {
			return fmt.Errorf("ScalingActive %s: %s: %s", c.Status, c.Reason, c.Message)
		}
	}
	path := "/apis/metrics.k8s.io/v1beta1/namespaces/" + h.ns + "/pods?labelSelector=app%3D" + h.name
	if m := hpa.Spec.Metrics[0]; m.Pods != nil {
		path = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/" + h.ns + "/pods/%2A/" + m.Pods.Metric.Name + "?labelSelector=app%3D" + h.name
	}
	b, err := w.e.Client.Discovery().RESTClient().Get().RequestURI(path).DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	if !strings.Contains(string(b), h.name+"-") {
		return fmt.Errorf("GET %s: no pod of %s in %s", path, h.name, b)
	}
	return nil
}

// report logs what the phase saw and returns it.
func (w *watch) report(t *testing.T, name string) phase {
	t.Helper()
	hwm, _ := w.e.Gateway.PeakRSS()
	peak, _ := w.cg.Peak()
	kills, err := w.cg.OOMKills()
	if err != nil {
		t.Error(err)
	}
	if kills > 0 {
		t.Errorf("%s: %d OOM kills in the gateway's cgroup", name, kills)
	}
	t.Logf("%s: %d looks; peak RSS %d MiB (VmHWM %d MiB), cgroup peak %d MiB with page cache, OOM kills %d; kubectl top %s; list every PodMetrics %s; HPAs read their metric in %d of %d checks; %d failures",
		name, w.looks, w.maxRSS>>20, hwm>>20, peak>>20, kills, quantiles(w.topLat), quantiles(w.listLat), w.hpaOK, w.hpaChecks, len(w.failures))
	return w.phase
}

func quantiles(d []time.Duration) string {
	if len(d) == 0 {
		return "never answered"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[int(p*float64(len(s)-1))].Round(time.Millisecond) }
	return fmt.Sprintf("%d answers, p50 %v p99 %v max %v", len(s), q(0.5), q(0.99), s[len(s)-1].Round(time.Millisecond))
}

// gatewayMetrics sums every family of the gateway's own /metrics over its
// series.
func gatewayMetrics(ctx context.Context, t *testing.T, e *env.Env) map[string]float64 {
	t.Helper()
	code, body, err := e.Gateway.Get(ctx, "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("gateway /metrics: %d %v", code, err)
	}
	sums := map[string]float64{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest := line, ""
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name, rest = line[:i], line[i:]
		}
		f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			sums[name] += v
		}
	}
	return sums
}

// logChurnTargets logs, per churning deployment, how many targets the pod
// job has, how many are up, and what their last scrapes read and added:
// which defence each half of the churn met.
func logChurnTargets(ctx context.Context, t *testing.T, e *env.Env) {
	t.Helper()
	for _, q := range []string{
		`count by (app) (label_replace(up{namespace="soak-churn"}, "app", "$1", "pod", "(churn-[a-z]+-limit).*"))`,
		`sum by (app) (label_replace(up{namespace="soak-churn"}, "app", "$1", "pod", "(churn-[a-z]+-limit).*"))`,
		`max by (app) (label_replace(scrape_samples_scraped{namespace="soak-churn"}, "app", "$1", "pod", "(churn-[a-z]+-limit).*"))`,
		`sum by (app) (label_replace(scrape_series_added{namespace="soak-churn"}, "app", "$1", "pod", "(churn-[a-z]+-limit).*"))`,
		`sum by (app) (label_replace(count_over_time(up{namespace="soak-churn"}[5m]), "app", "$1", "pod", "(churn-[a-z]+-limit).*"))`,
	} {
		code, body, err := e.Gateway.Get(ctx, "/prometheus/api/v1/query?query="+url.QueryEscape(q))
		if len(body) > 600 {
			body = body[:600] + "..."
		}
		t.Logf("%s: %d %s %v", q, code, body, err)
	}
}
