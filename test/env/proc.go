package env

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process whose output goes to a log file.
type proc struct {
	name    string
	path    string
	args    []string
	logPath string
	detach  bool
	cmd     *exec.Cmd
	done    chan struct{}
}

// start runs the process. Attached children die with the test binary
// (Pdeathsig); detached ones get their own session and outlive it.
func (p *proc) start() error {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s log: %w", p.name, err)
	}
	defer f.Close()
	fmt.Fprintf(f, "==> %s %s %s\n", time.Now().Format(time.RFC3339), p.path, strings.Join(p.args, " "))
	cmd := exec.Command(p.path, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	if p.detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(p.done)
	return nil
}

func (p *proc) pid() int {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	if p.done == nil {
		return true
	}
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// signal sends sig and waits up to timeout for the process to end.
func (p *proc) signal(sig syscall.Signal, timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("signal %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s did not exit within %v of %v", p.name, timeout, sig)
	}
}

// stop ends the process gently, then firmly.
func (p *proc) stop() error {
	if err := p.signal(syscall.SIGTERM, 20*time.Second); err != nil {
		return p.signal(syscall.SIGKILL, 10*time.Second)
	}
	return nil
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
