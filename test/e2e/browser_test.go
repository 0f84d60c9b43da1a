package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// screenshotEnv, when set, also writes the page's screenshot to
// docs/autoscaling-page.png (docs/explain.md shows it).
const screenshotEnv = "UPDATE_DOCS_SCREENSHOT"

// checkHPAPage loads d's HPA page from the gateway's loopback listener in
// headless Chromium (Debian's chromium package; make e2e-build installs
// it), as a user does through kubectl port-forward, and checks what
// renders against the live HPA: the verdict, the desired count the
// controller set, a row per pod, and the charts' lines.
func checkHPAPage(ctx context.Context, t *testing.T, d deployment, want int32) {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("headless Chromium (apt-get install chromium; make e2e-build installs it): %v", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.WindowSize(1280, 1200),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.Flag("disable-gpu", true))
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	bctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()

	page := fmt.Sprintf("%s/ui/hpa/%s/%s?range=5m", e.Gateway.PagesURL, d.ns, d.name)
	start := time.Now()
	if err := chromedp.Do(bctx,
		chromedp.Navigate(page),
		chromedp.WaitVisible(chromedp.CSS("#verdict")),
		chromedp.WaitVisible(chromedp.CSS("#chart-replicas")),
	); err != nil {
		t.Fatalf("Chromium on %s: %v", page, err)
	}
	text := func(sel string) string {
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("Chromium: text of %s on %s: %v", sel, page, err)
		}
		return strings.TrimSpace(s)
	}
	count := func(expr string) int {
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](expr))
		if err != nil {
			t.Fatalf("Chromium: %s on %s: %v", expr, page, err)
		}
		return n
	}
	verdict, desired, current := text("#verdict"), text("#desired"), text("#current")
	replicaLines := count(`document.querySelectorAll('#chart-replicas polyline').length`)
	metricLines := count(`document.querySelectorAll('#chart-metric-0 polyline').length`)
	podRows := count(`document.querySelectorAll('table.pods tr').length - 1`)
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("Chromium: screenshot of %s: %v", page, err)
	}
	t.Logf("Chromium rendered %s in %v: %q, desired %s, %d replica lines, %d metric lines, %d pod rows",
		page, time.Since(start).Round(time.Millisecond), verdict, desired, replicaLines, metricLines, podRows)

	h, err := e.Client.AutoscalingV2().HorizontalPodAutoscalers(d.ns).Get(ctx, d.name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := fmt.Sprint(want)
	if desired != w || current != w || fmt.Sprint(h.Status.DesiredReplicas) != w {
		t.Errorf("page: current %s, desired %s; the controller's desired %d; want %d", current, desired, h.Status.DesiredReplicas, want)
	}
	if !strings.HasPrefix(verdict, "held at "+w) {
		t.Errorf("page verdict %q, want held at %d", verdict, want)
	}
	if podRows != int(want) {
		t.Errorf("page lists %d pods, want %d", podRows, want)
	}
	// current, desired (controller and replay), recommendation, min, max.
	if replicaLines < 4 || metricLines < 2 {
		t.Errorf("charts: %d replica lines (want at least 4), %d metric lines (want current and target)", replicaLines, metricLines)
	}
	out := filepath.Join(e.Dir, "autoscaling-page.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Error(err)
	}
	if os.Getenv(screenshotEnv) != "" {
		if err := os.WriteFile(filepath.Join("..", "..", "docs", "autoscaling-page.png"), shot, 0o644); err != nil {
			t.Error(err)
		}
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(shot))
}
