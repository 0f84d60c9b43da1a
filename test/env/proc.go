package env

import (
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

// proc is a child process whose output goes to a log file; test/cluster
// starts and stops it exactly as it does the control plane's.
type proc struct {
	name    string
	path    string
	args    []string
	logPath string
	detach  bool
	// cgroup, when set, is the memory cgroup the process runs in.
	cgroup *MemoryCgroup
	// hostname, when set, is the process's hostname, in a UTS namespace
	// of its own (as a pod has; needs root).
	hostname string
	p        *cluster.Process
}

// start runs the process (again, after it ended).
func (p *proc) start() error {
	path, args := p.path, p.args
	if p.cgroup != nil {
		path, args = p.cgroup.wrap(path, args)
	}
	if p.hostname != "" {
		// unshare execs without forking: the pid stays the process's.
		path, args = "unshare", append([]string{"--uts", "/bin/sh", "-c", `echo "$0" > /proc/sys/kernel/hostname && exec "$@"`, p.hostname, path}, args...)
	}
	cp, err := cluster.StartProcess(p.name, path, args, p.logPath, p.detach)
	if err != nil {
		return err
	}
	p.p = cp
	return nil
}

func (p *proc) pid() int {
	if p.p == nil {
		return 0
	}
	return p.p.PID()
}

func (p *proc) exited() bool { return p.p == nil || p.p.Exited() }

// exitErr is how the process ended ("signal: killed"), nil while it runs.
func (p *proc) exitErr() error {
	if p.p == nil {
		return nil
	}
	return p.p.ExitErr()
}

// kill ends the process with SIGKILL: no shutdown, no flush.
func (p *proc) kill() error {
	if p.p == nil {
		return nil
	}
	return p.p.Kill()
}

// stop ends the process gently, then firmly.
func (p *proc) stop() error {
	if p.p == nil {
		return nil
	}
	return p.p.Stop(20 * time.Second)
}

// tail returns the last n lines of the log.
func (p *proc) tail(n int) string {
	return tailFile(p.logPath, n)
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// writePIDs records detached processes so Down can stop them from another process.
func writePIDs(dir string, ps ...*proc) error {
	var b strings.Builder
	for _, p := range ps {
		if p != nil && p.pid() != 0 {
			fmt.Fprintf(&b, "%s %d\n", p.name, p.pid())
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
