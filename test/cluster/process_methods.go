package cluster

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// PID is the process id.
func (p *Process) PID() int { return p.pid }

// Name is the name the process was started under.
func (p *Process) Name() string { return p.name }

// LogPath is the file its output is appended to.
func (p *Process) LogPath() string { return p.logPath }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	gone, _ := p.exited()
	return gone
}

// ExitErr is how the process ended ("signal: killed", "exited with status
// 0"), nil while it runs.
func (p *Process) ExitErr() error {
	gone, err := p.exited()
	if !gone {
		return nil
	}
	return err
}

// Terminate sends SIGTERM and waits up to grace for the process to end, as
// the kubelet waits a pod's terminationGracePeriodSeconds, then SIGKILLs it
// as the kubelet would. It reports whether the process ended within grace.
func (p *Process) Terminate(grace time.Duration) (inTime bool, err error) {
	if p.Exited() {
		return true, nil
	}
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false, fmt.Errorf("signal %s (pid %d): %w", p.name, p.pid, err)
	}
	if p.waitGone(grace) {
		return true, nil
	}
	return false, p.Kill()
}

// Kill sends SIGKILL at once (no shutdown, no flush) and waits for the end.
func (p *Process) Kill() error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.name, p.pid, err)
	}
	if !p.waitGone(10 * time.Second) {
		return fmt.Errorf("%s (pid %d) still running after SIGKILL", p.name, p.pid)
	}
	return nil
}

// Tail is the last n lines of the process's log.
func (p *Process) Tail(n int) string { return TailFile(p.logPath, n) }

// TailFile is the last n lines of the file at path, or why there are none.
func TailFile(path string, n int) string {
	tail, err := tailFile(path, n)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	return tail
}
