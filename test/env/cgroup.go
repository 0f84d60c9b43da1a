package env

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// MemoryCgroup is a memory cgroup with a limit, as the kubelet gives a
// container with limits.memory: a process in it that goes over the limit
// and cannot be reclaimed below it is OOM-killed by the kernel. The gateway
// started in one sees the limit as it would in its pod (--auto-gomemlimit
// reads it). cgroup v2 (unified) and v1 (a memory hierarchy) both work;
// creating one needs root.
type MemoryCgroup struct {
	dir string
	v2  bool
}

// NewMemoryCgroup creates (or reuses) the cgroup name with a memory limit
// of limit bytes and no swap beyond it.
func NewMemoryCgroup(name string, limit int64) (*MemoryCgroup, error) {
	c := &MemoryCgroup{}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		c.v2, c.dir = true, filepath.Join("/sys/fs/cgroup", name)
		// The root must hand the memory controller down to its children.
		if err := os.WriteFile("/sys/fs/cgroup/cgroup.subtree_control", []byte("+memory"), 0o644); err != nil {
			return nil, fmt.Errorf("enable the memory controller for child cgroups: %w", err)
		}
	} else if _, err := os.Stat("/sys/fs/cgroup/memory/memory.limit_in_bytes"); err == nil {
		c.dir = filepath.Join("/sys/fs/cgroup/memory", name)
	} else {
		return nil, errors.New("no cgroup v2 and no cgroup v1 memory hierarchy under /sys/fs/cgroup")
	}
	if err := os.Mkdir(c.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create memory cgroup (needs root): %w", err)
	}
	files := map[string]string{"memory.limit_in_bytes": fmt.Sprint(limit)}
	if c.v2 {
		files = map[string]string{"memory.max": fmt.Sprint(limit), "memory.swap.max": "0"}
	}
	for f, v := range files {
		if err := os.WriteFile(filepath.Join(c.dir, f), []byte(v), 0o644); err != nil && !(c.v2 && f == "memory.swap.max") {
			return nil, fmt.Errorf("set %s: %w", f, err)
		}
	}
	return c, nil
}

// Dir is the cgroup's directory.
func (c *MemoryCgroup) Dir() string { return c.dir }

// procsFile is where a process writes its pid to join the cgroup.
func (c *MemoryCgroup) procsFile() string { return filepath.Join(c.dir, "cgroup.procs") }

// wrap returns the command that runs path with args inside the cgroup: a
// shell joins it, then execs path, so the process has the same pid and is
// in the cgroup from its first instruction.
func (c *MemoryCgroup) wrap(path string, args []string) (string, []string) {
	return "/bin/sh", append([]string{"-c", `echo $$ > "$0" && exec "$@"`, c.procsFile(), path}, args...)
}

// Peak is the highest memory the cgroup was charged since it was created
// or ResetPeak, page cache included (the TSDB's files are charged to it,
// and reclaimed before anything is OOM-killed).
func (c *MemoryCgroup) Peak() (int64, error) {
	if c.v2 {
		return c.readInt("memory.peak")
	}
	return c.readInt("memory.max_usage_in_bytes")
}

// ResetPeak starts Peak over (cgroup v1 only; v2's memory.peak is reset by
// writing to it on newer kernels, and is left as is elsewhere).
func (c *MemoryCgroup) ResetPeak() {
	if c.v2 {
		_ = os.WriteFile(filepath.Join(c.dir, "memory.peak"), []byte("0"), 0o644)
		return
	}
	_ = os.WriteFile(filepath.Join(c.dir, "memory.max_usage_in_bytes"), []byte("0"), 0o644)
}

// OOMKills is how many processes of the cgroup the kernel OOM-killed.
func (c *MemoryCgroup) OOMKills() (int64, error) {
	file := "memory.oom_control"
	if c.v2 {
		file = "memory.events"
	}
	f, err := os.Open(filepath.Join(c.dir, file))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "oom_kill "); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("no oom_kill count in %s (kernel older than 4.13?)", file)
}

func (c *MemoryCgroup) readInt(file string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// Remove deletes the cgroup once no process is left in it.
func (c *MemoryCgroup) Remove() error {
	if err := os.Remove(c.dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cgroup %s: %w", c.dir, err)
	}
	return nil
}
