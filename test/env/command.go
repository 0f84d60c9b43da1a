package env

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
)

// Command is how to start a child process, again after it ended: the
// simulated kubelets, a gateway, or a server the benchmark compares it
// with. Each start is a cluster.Process, started and stopped as the
// control plane's components are.
type Command struct {
	Name    string
	Path    string
	Args    []string
	LogPath string
	Detach  bool
	// Cgroup, when set, is the memory cgroup the process runs in.
	Cgroup *MemoryCgroup
	// Hostname, when set, is the process's hostname, in a UTS namespace
	// of its own (as a pod has; needs root).
	Hostname string
	// Env, when set, is added to the process's environment (NAME=value).
	Env []string
	// StopGrace is how long Stop waits after SIGTERM (default 20 s).
	StopGrace time.Duration
	p         *cluster.Process
}

// Start runs the command (again, after it ended).
func (c *Command) Start() error {
	path, args := c.Path, c.Args
	if c.Cgroup != nil {
		path, args = c.Cgroup.wrap(path, args)
	}
	if len(c.Env) > 0 {
		// env execs without forking too.
		path, args = "env", append(append(append([]string{}, c.Env...), path), args...)
	}
	if c.Hostname != "" {
		// unshare execs without forking: the pid stays the process's.
		path, args = "unshare", append([]string{"--uts", "/bin/sh", "-c", `echo "$0" > /proc/sys/kernel/hostname && exec "$@"`, c.Hostname, path}, args...)
	}
	p, err := cluster.StartProcess(c.Name, path, args, c.LogPath, c.Detach)
	if err != nil {
		return err
	}
	c.p = p
	return nil
}

// PID is the running process's id, 0 before Start.
func (c *Command) PID() int {
	if c.p == nil {
		return 0
	}
	return c.p.PID()
}

// Exited reports whether the process ended (or never started).
func (c *Command) Exited() bool { return c.p == nil || c.p.Exited() }

// ExitErr is how the process ended ("signal: killed"), nil while it runs.
func (c *Command) ExitErr() error {
	if c.p == nil {
		return nil
	}
	return c.p.ExitErr()
}

// Kill ends the process with SIGKILL: no shutdown, no flush.
func (c *Command) Kill() error {
	if c.p == nil {
		return nil
	}
	return c.p.Kill()
}

// Stop ends the process gently (SIGTERM), then firmly after StopGrace.
func (c *Command) Stop() error {
	if c.p == nil {
		return nil
	}
	return c.p.Stop(cmp.Or(c.StopGrace, 20*time.Second))
}

// Terminate sends SIGTERM and waits up to grace, then SIGKILLs; it reports
// whether the process ended within grace.
func (c *Command) Terminate(grace time.Duration) (bool, error) {
	if c.p == nil {
		return true, nil
	}
	return c.p.Terminate(grace)
}

// Tail returns the last n lines of the log.
func (c *Command) Tail(n int) string { return cluster.TailFile(c.LogPath, n) }

// writePIDs records detached processes so Down can stop them from another process.
func writePIDs(dir string, cs ...*Command) error {
	var b strings.Builder
	for _, c := range cs {
		if c != nil && c.PID() != 0 {
			fmt.Fprintf(&b, "%s %d\n", c.Name, c.PID())
		}
	}
	return os.WriteFile(filepath.Join(dir, "env.pids"), []byte(b.String()), 0o644)
}

// killPIDs stops the processes writePIDs recorded, if they still run.
func killPIDs(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "env.pids"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		pid, _ := strconv.Atoi(f[1])
		if pid <= 0 {
			continue
		}
		if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("stop %s (%d): %w", f[0], pid, err))
		}
	}
	return errors.Join(errs...)
}
