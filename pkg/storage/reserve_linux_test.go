//go:build linux

package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/util/compression"
)

const reserveChildEnv = "METRICS_GATEWAY_RESERVE_CHILD"

// TestReserveKeepsTheTSDBFromPanicking: on a real filesystem that fills up,
// Prometheus' TSDB still takes a few commits (the WAL's last page has
// room) and then panics writing the first full head chunk, whose file it
// cannot create ("preallocate: no space left on device"), killing the
// process. With a reserve the commits are refused before the filesystem is
// full and the process lives. Each case runs in a child process, so the
// panic can be seen.
func TestReserveKeepsTheTSDBFromPanicking(t *testing.T) {
	if dir := os.Getenv(reserveChildEnv); dir != "" {
		reserveChild(dir)
		return
	}
	for _, c := range []struct {
		name    string
		reserve int64
		want    string
	}{
		{"no reserve: the TSDB panics", 0, "no space left on device"},
		{"reserve: commits refused, no panic", 8 << 20, "refused 81 of 81 commits"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "storage")
			if err := os.Mkdir(dir, 0o750); err != nil {
				t.Fatal(err)
			}
			if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=32m,mode=0750"); err != nil {
				if errors.Is(err, syscall.EPERM) {
					t.Skipf("mount tmpfs: %v (needs root)", err)
				}
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
			cmd := exec.Command(os.Args[0], "-test.run=^TestReserveKeepsTheTSDBFromPanicking$", "-test.count=1")
			cmd.Env = append(os.Environ(), reserveChildEnv+"="+dir, "METRICS_GATEWAY_RESERVE="+strconv.FormatInt(c.reserve, 10))
			out, err := cmd.CombinedOutput()
			t.Logf("child: %v; %s", err, firstLine(string(out), "panic:", "refused"))
			if !strings.Contains(string(out), c.want) {
				t.Fatalf("child output lacks %q:\n%s", c.want, tail(string(out), 3000))
			}
			if c.reserve == 0 && err == nil {
				t.Fatalf("child exited cleanly without the reserve; has the TSDB stopped panicking (prometheus/prometheus#18152)?\n%s", tail(string(out), 2000))
			}
			if c.reserve > 0 && err != nil {
				t.Fatalf("child failed with the reserve: %v\n%s", err, tail(string(out), 3000))
			}
		})
	}
}

// reserveChild opens storage on dir (a small tmpfs), commits 119 samples
// of one series, fills the filesystem, and commits 81 more: the head chunk
// fills at 120. The WAL is snappy-compressed: its 119 one-sample records
// take 3.7 KB, so the segment's first 4 KB tmpfs page still has room for
// the commit that fills the chunk. zstd's and uncompressed records take
// 4.08 KB, so the WAL write fails before the chunk is cut; whether the
// panic is reached depends on that room, not on the compression.
func reserveChild(dir string) {
	reserve, _ := strconv.ParseInt(os.Getenv("METRICS_GATEWAY_RESERVE"), 10, 64)
	s, err := Open(Options{Path: dir, MinFreeBytes: reserve, WALCompression: compression.Snappy}, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	ls := labels.FromStrings("__name__", "x", "job", "kubelet")
	commit := func(i int) error {
		app := s.Appendable().AppenderV2(context.Background())
		if _, err := app.Append(0, ls, 0, int64(i)*15000, float64(i), nil, nil, promstorage.AOptions{}); err != nil {
			panic(err)
		}
		return app.Commit()
	}
	for i := range 119 {
		if err := commit(i); err != nil {
			panic(err)
		}
	}
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		panic(err)
	}
	buf := make([]byte, 1<<20)
	for err == nil {
		_, err = f.Write(buf)
	}
	if !errors.Is(err, syscall.ENOSPC) {
		panic(err)
	}
	f.Close()
	if s.reserve != nil {
		s.reserve.checked = s.reserve.checked.AddDate(-1, 0, 0) // look again now
	}
	refused := 0
	var last error
	for i := 119; i < 200; i++ {
		if err := commit(i); err != nil {
			refused++
			last = err
		}
	}
	// The full chunk is written by a background queue; closing waits for it.
	if err := s.Close(); err != nil {
		fmt.Println("close:", err)
	}
	fmt.Printf("refused %d of 81 commits; last error: %v\n", refused, last)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// firstLine is the first line of out that starts with one of prefixes.
func firstLine(out string, prefixes ...string) string {
	for _, l := range strings.Split(out, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				return l
			}
		}
	}
	return ""
}
