package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// testBadKubelet: one simulated kubelet answers garbage, then 500, then
// hangs. Its node vanishes from kubectl top, the others keep answering, and
// the gateway counts the errors.
func testBadKubelet(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	const bad = "sim-node-1"
	t.Cleanup(func() { _ = e.SetKubeletMode(context.Background(), bad, "ok") })
	for _, mode := range []string{"garbage", "500", "hang"} {
		before := scrapeErrors(ctx, t, bad)
		if err := e.SetKubeletMode(ctx, bad, mode); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, mode+": "+bad+" gone from kubectl top", func() error {
			// kubectl lists every Node object, showing <unknown> for
			// those without metrics.
			out, err := e.Kubectl(ctx, "top", "nodes", "--no-headers")
			if err != nil {
				return err
			}
			shown := topNodes(out)
			if shown[bad] {
				return fmt.Errorf("still shown:\n%s", out)
			}
			for _, good := range []string{"sim-node-0", "sim-node-2"} {
				if !shown[good] {
					return fmt.Errorf("%s missing too:\n%s", good, out)
				}
			}
			raw, err := e.Kubectl(ctx, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes")
			if err != nil || strings.Contains(raw, `"name":"`+bad+`"`) {
				return fmt.Errorf("raw node list still has %s: %v", bad, err)
			}
			if n := scrapeErrors(ctx, t, bad); n <= before {
				return fmt.Errorf("scrape errors %v, before %v", n, before)
			}
			return nil
		})
		if err := e.SetKubeletMode(ctx, bad, "ok"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 90*time.Second, mode+": "+bad+" back", func() error {
			out, err := e.Kubectl(ctx, "top", "nodes", "--no-headers")
			if err != nil || !topNodes(out)[bad] {
				return fmt.Errorf("not back: %v\n%s", err, out)
			}
			return nil
		})
	}
	for _, good := range []string{"sim-node-0", "sim-node-2"} {
		if n := scrapeErrors(ctx, t, good); n != 0 {
			t.Errorf("%s: %v scrape errors", good, n)
		}
	}
}

// topNodes returns the nodes kubectl top shows with usage.
func topNodes(out string) map[string]bool {
	shown := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 5 && f[1] != "<unknown>" {
			shown[f[0]] = true
		}
	}
	return shown
}

var errorsLine = regexp.MustCompile(`(?m)^metrics_gateway_scrape_errors_total\{job="kubelet",target="([^"]+)"\} (\S+)$`)

func scrapeErrors(ctx context.Context, t *testing.T, node string) float64 {
	t.Helper()
	code, body, err := e.Gateway.Get(ctx, "/metrics")
	if err != nil || code != 200 {
		t.Fatalf("gateway /metrics: %d %v", code, err)
	}
	for _, m := range errorsLine.FindAllStringSubmatch(body, -1) {
		if m[1] == node {
			v, _ := strconv.ParseFloat(m[2], 64)
			return v
		}
	}
	return 0
}

var headMinTime = regexp.MustCompile(`(?m)^prometheus_tsdb_head_min_time (\S+)$`)

// testGatewaySurvivesSIGKILL: killed without warning and restarted on the
// same storage, the gateway answers kubectl top again within 15 s, and the
// samples from before the kill are still in its TSDB.
func testGatewaySurvivesSIGKILL(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	ensureTopWorkloads(ctx, t)
	// Samples from well before the kill (below), also when the gateway
	// started moments ago.
	eventually(t, 2*e.Resolution+30*time.Second, "samples older than a scrape interval", func() error {
		minT, err := oldestSample(ctx)
		if err == nil && !minT.Before(time.Now().Add(-e.Resolution)) {
			err = fmt.Errorf("oldest sample %v", minT)
		}
		return err
	})
	if _, err := e.Kubectl(ctx, "top", "pods", "-n", "e2e-top"); err != nil {
		t.Fatalf("before the kill: %v", err)
	}
	killedAt := time.Now()
	if err := e.Gateway.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := e.Gateway.Start(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	topAfterRestart(ctx, t, 15*time.Second)
	t.Logf("kubectl top answered %v after the restart (%v after the kill)", time.Since(restarted).Round(100*time.Millisecond), time.Since(killedAt).Round(100*time.Millisecond))
	oldest, err := oldestSample(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !oldest.Before(killedAt.Add(-e.Resolution)) {
		t.Errorf("oldest sample %v is not from well before the kill at %v", oldest, killedAt)
	}
}

// oldestSample is the gateway's TSDB head's oldest sample time.
func oldestSample(ctx context.Context) (time.Time, error) {
	_, body, err := e.Gateway.Get(ctx, "/metrics")
	if err != nil {
		return time.Time{}, err
	}
	m := headMinTime.FindStringSubmatch(body)
	if m == nil {
		return time.Time{}, fmt.Errorf("no prometheus_tsdb_head_min_time")
	}
	minT, err := strconv.ParseFloat(m[1], 64)
	return time.UnixMilli(int64(minT)), err
}

// testGatewaySIGTERM: SIGTERM while a query API request is held open (a
// client that sent half its body, as a stalled Grafana would; a long
// evaluation holds the drain the same way) ends the gateway within the
// Deployment's 60s terminationGracePeriodSeconds, and the next start needs
// no WAL repair and answers kubectl top.
func testGatewaySIGTERM(t *testing.T) {
	logsOnFailure(t)
	ctx := context.Background()
	ensureTopWorkloads(ctx, t)
	grafana, _ := queryTokens(ctx, t)
	// podinfo's two pods get 10 requests/s each through the restart: the
	// zero-config rate must read them within 5% before it, and again
	// within two scrape intervals of the first scrape after it.
	ensureZeroConfig(ctx, t) // the zero-config rate, not an adapter file's rate(...[1m])
	ensurePodinfo(ctx, t)
	const rps = 20
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	go func() { _, _ = e.Load(loadCtx, podinfo.ns, "app="+podinfo.name+",workload!=other", rps) }()
	eventually(t, 2*time.Minute, "http_requests within 5% before the restart", func() error { return loadShared(ctx, podinfo, rps, 0.05) })
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.Gateway.Port), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /prometheus/api/v1/query HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nquery=up", grafana)
	time.Sleep(2 * time.Second)
	const grace = 60 * time.Second
	start := time.Now()
	inTime, err := e.Gateway.Terminate(grace)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	if !inTime {
		t.Fatalf("still running %v after SIGTERM: the kubelet would have killed it", grace)
	}
	t.Logf("the gateway exited %v after SIGTERM with a request held open", took.Round(100*time.Millisecond))
	logInfo, err := os.Stat(e.Gateway.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	logStart := logInfo.Size()
	if err := e.Gateway.Start(ctx); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	// The drain left the stored kubelet samples older than the freshness
	// window, so cpu needs two new kubelet scrapes: the first comes at the
	// target's offset (up to one interval), the second one interval later.
	// /readyz waits for them (kubelet-rates); once it passes, kubectl top
	// must answer at once.
	eventually(t, 2*e.Resolution+30*time.Second, "/readyz after the restart", func() error {
		code, body, err := e.Gateway.Get(ctx, "/readyz")
		if err == nil && code != http.StatusOK {
			err = fmt.Errorf("/readyz %d: %s", code, body)
		}
		return err
	})
	ready := time.Now()
	topAfterRestart(ctx, t, 10*time.Second)
	t.Logf("ready %v after the restart; kubectl top answered %v later", ready.Sub(restarted).Round(100*time.Millisecond), time.Since(ready).Round(100*time.Millisecond))
	// The pod job's first scrape comes within an interval of the start, the
	// second one interval later: from then on every pod within 5%.
	eventually(t, max(2*e.Resolution+10*time.Second-time.Since(restarted), time.Second), "http_requests within 5% after the restart", func() error {
		return loadShared(ctx, podinfo, rps, 0.05)
	})
	within := time.Since(restarted)
	for range 6 {
		time.Sleep(5 * time.Second)
		if err := loadShared(ctx, podinfo, rps, 0.05); err != nil {
			t.Errorf("after the restart, once within 5%%: %v", err)
		}
	}
	t.Logf("http_requests within 5%% of each pod's rate %v after the restart, and for the 30s after", within.Round(100*time.Millisecond))
	b, err := os.ReadFile(e.Gateway.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b[logStart:]), "\n") {
		// The TSDB's own words when it repairs ("Encountered WAL read error,
		// attempting repair", "Starting corruption repair") and ours.
		l := strings.ToLower(line)
		if (strings.Contains(l, "repair") && (strings.Contains(l, "wal") || strings.Contains(l, "corruption"))) || strings.Contains(l, "corrupt block") {
			t.Errorf("the start after SIGTERM repaired storage: %s", line)
		}
	}
}

// topAfterRestart waits until kubectl top lists the five pods of e2e-top.
func topAfterRestart(ctx context.Context, t *testing.T, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "kubectl top after the restart", func() error {
		out, err := e.Kubectl(ctx, "top", "pods", "-n", "e2e-top", "--no-headers")
		if err != nil {
			return err
		}
		if n := len(strings.Split(strings.TrimSpace(out), "\n")); n != 5 {
			return fmt.Errorf("%d pods:\n%s", n, out)
		}
		return nil
	})
}
