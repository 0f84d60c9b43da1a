//go:build linux

package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestFullDiskMarksTargetsDownAndRecovers runs the gateway on a real
// filesystem that fills up: a tmpfs of its own, filled to the last byte by
// a filler file. Each kubelet whose scrapes cannot be written is reported
// down with the write's ENOSPC and counted, /readyz fails on
// storage-writable while /livez stays up, and once the filler is deleted
// the next scrapes are stored, queryable, and the gateway is ready again.
// Injected commit errors cover the recorder (pkg/scrape); this covers what
// the TSDB really does when its WAL cannot be written ("no reserve"), and
// what the gateway does first when --storage-min-free-space is kept: the
// same, before the filesystem is full, so that the TSDB never meets
// ENOSPC writing a head-chunk file (it panics there).
func TestFullDiskMarksTargetsDownAndRecovers(t *testing.T) {
	for _, c := range []struct {
		name    string
		size    int
		reserve string
		leave   uint64 // fill until this much is free; 0: until ENOSPC
		want    string
	}{
		{"no reserve", 16 << 20, "0", 0, "no space left on device"},
		{"reserve", 32 << 20, "8MiB", 4 << 20, "under the reserve of 8388608"},
	} {
		t.Run(c.name, func(t *testing.T) { fullDisk(t, c.size, c.reserve, c.leave, c.want) })
	}
}

func fullDisk(t *testing.T, size int, reserve string, leave uint64, want string) {
	dir := mountTmpfs(t, size)
	logs := &logLines{}
	g := startGateway(t, dir, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(logs, nil))
		o.StorageMinFreeSpace = reserve
	})
	for name, ip := range map[string]string{"node-a": "127.0.0.2", "node-b": "127.0.0.3"} {
		g.api.addNode(name, ip, g.kubelet[name].port, nil)
	}
	g.replayRounds(t, time.Now().Add(-5*time.Second).Truncate(time.Second))
	eventually(t, 20*time.Second, "ready before the disk fills", func() error {
		if code, body := g.get(t, "/readyz?verbose", ""); code != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		return nil
	})

	filler, free := fillDisk(t, dir, leave)
	filled := time.Now()
	t.Logf("filler %d MiB, %d bytes left free", fileSize(t, filler)>>20, free)
	// The WAL's segment may end inside an allocated page, so a commit or two
	// may still fit; every one after fails.
	eventually(t, 20*time.Second, "kubelets down with "+want+", readyz failing", func() error {
		if code, body := g.get(t, "/readyz?verbose", ""); code == http.StatusOK || !strings.Contains(string(body), "[-]storage-writable failed") {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		for _, node := range []string{"node-a", "node-b"} {
			if up, ok := selfMetric(t, g, `metrics_gateway_scrape_target_up{job="kubelet",target="`+node+`"}`); !ok || up != 0 {
				return fmt.Errorf("%s: target_up %v (present %v), want 0", node, up, ok)
			}
			if line := logs.find("Target scrape failing", "target="+node+" "); !strings.Contains(line, want) {
				return fmt.Errorf("%s: no failure logged with %q; last failure logged: %q", node, want, line)
			}
		}
		return nil
	})
	detected := time.Since(filled)
	t.Logf("logged: %s", strings.TrimSpace(logs.find("Target scrape failing", "target=node-a ")))
	if code, body := g.get(t, "/livez?verbose", ""); code != http.StatusOK {
		t.Errorf("/livez with the disk full: %d %s", code, body)
	}
	// Still full: the next scrape of each kubelet is read, not stored, and
	// counted; its target stays down. waitScraped returns once a scrape
	// begun after the call has finished, commit included.
	downAt := time.Now()
	before, _ := selfMetric(t, g, "metrics_gateway_storage_commit_failures_total")
	for _, k := range g.kubelet {
		waitScraped(t, k)
	}
	after, _ := selfMetric(t, g, "metrics_gateway_storage_commit_failures_total")
	if after < before+2 {
		t.Errorf("commit failures %v, then %v after another scrape of each kubelet; want at least 2 more", before, after)
	}
	stored, err := newestUp(t, g)
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"node-a", "node-b"} {
		if up, _ := selfMetric(t, g, `metrics_gateway_scrape_target_up{job="kubelet",target="`+node+`"}`); up != 0 {
			t.Errorf("%s: target_up %v while its scrapes are lost", node, up)
		}
		if errs := scrapeErrors(t, g, node); errs < 2 {
			t.Errorf("%s: scrape errors %v while its scrapes are lost", node, errs)
		}
		if stored[node].IsZero() || !stored[node].Before(downAt) {
			t.Errorf("%s: a scrape at %v was stored after the target was reported down (%v)", node, stored[node], downAt)
		}
	}
	if code, _ := g.get(t, "/readyz", ""); code == http.StatusOK {
		t.Error("/readyz OK with the disk still full")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	eventually(t, 20*time.Second, "ready, kubelets up and newly stored", func() error {
		if code, body := g.get(t, "/readyz?verbose", ""); code != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", code, body)
		}
		for _, node := range []string{"node-a", "node-b"} {
			if up, _ := selfMetric(t, g, `metrics_gateway_scrape_target_up{job="kubelet",target="`+node+`"}`); up != 1 {
				return fmt.Errorf("%s: target_up %v, want 1", node, up)
			}
		}
		again, err := newestUp(t, g)
		if err != nil {
			return err
		}
		for _, node := range []string{"node-a", "node-b"} {
			if !again[node].After(freed) {
				return fmt.Errorf("%s: newest stored scrape at %v, before space returned at %v", node, again[node], freed)
			}
		}
		return nil
	})
	t.Logf("disk full: last scrape stored %v after the fill, down and not ready after %v; space back: up, stored and ready after %v; %v commits failed",
		stored["node-a"].Sub(filled).Round(time.Millisecond), detected.Round(time.Millisecond), time.Since(freed).Round(time.Millisecond), after)
}

// mountTmpfs mounts a tmpfs of size bytes on a new directory, which is
// unmounted after the gateway stops; lazily, since a TSDB closed on a full
// disk may keep its WAL segment open. It skips the test where mounting is
// not allowed.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "storage")
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0750", size)); err != nil {
		if errors.Is(err, syscall.EPERM) {
			t.Skipf("mount tmpfs on %s: %v (the full-disk test needs root)", dir, err)
		}
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file in dir until at most leave bytes are free, or with
// leave 0 until the filesystem refuses with ENOSPC, and returns its path
// and the bytes left free. tmpfs hands out whole pages, so what is left at
// ENOSPC is the unused tail of other files' last pages.
func fillDisk(t *testing.T, dir string, leave uint64) (path string, free uint64) {
	t.Helper()
	path = filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var st syscall.Statfs_t
	for err == nil {
		if leave > 0 {
			if err := syscall.Statfs(dir, &st); err != nil {
				t.Fatal(err)
			}
			if st.Bavail*uint64(st.Bsize) <= leave {
				return path, st.Bavail * uint64(st.Bsize)
			}
		}
		_, err = f.Write(buf)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("fill %s: %v, want ENOSPC", path, err)
	}
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return path, st.Bavail * uint64(st.Bsize)
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// selfMetric reads one series of the gateway's /metrics by its name and
// labels as exposed.
func selfMetric(t *testing.T, g *gateway, series string) (float64, bool) {
	t.Helper()
	code, body := g.get(t, "/metrics", "")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	s := bufio.NewScanner(bytes.NewReader(body))
	s.Buffer(nil, 1<<20)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// newestUp returns the time of the newest stored scrape of each kubelet
// that succeeded, read through the query API. (timestamp of anything but a
// selector is the evaluation time.)
func newestUp(t *testing.T, g *gateway) (map[string]time.Time, error) {
	t.Helper()
	code, body := apiRequest(t, g.url+PrometheusPrefix, http.MethodPost, "/api/v1/query", url.Values{"query": {`timestamp(up{job="kubelet"}) and up{job="kubelet"} == 1`}}, "")
	if code != http.StatusOK {
		return nil, fmt.Errorf("query: %d %s", code, body)
	}
	var answer struct {
		Data struct {
			Result []struct {
				Metric map[string]string
				Value  [2]any
			}
		}
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return nil, err
	}
	out := map[string]time.Time{}
	for _, r := range answer.Data.Result {
		s, _ := r.Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query answer %s: %w", body, err)
		}
		out[r.Metric["instance"]] = time.UnixMilli(int64(math.Round(v * 1000)))
	}
	return out, nil
}

// logLines is a gateway's log, a line per record.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, string(p))
	l.mu.Unlock()
	return len(p), nil
}

// find returns the last line holding every one of parts, or "".
func (l *logLines) find(parts ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
lines:
	for i := len(l.lines) - 1; i >= 0; i-- {
		for _, p := range parts {
			if !strings.Contains(l.lines[i], p) {
				continue lines
			}
		}
		return l.lines[i]
	}
	return ""
}
