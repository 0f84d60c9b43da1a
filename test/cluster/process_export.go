package cluster

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Process is a child process started the way the control plane's are:
// output appended to a log file; killed with its parent when attached, in a
// session of its own when detached. test/env runs the simulated kubelets
// and the gateway with it.
type Process struct{ p *proc }

// StartProcess runs path with args, output appended to logPath.
func StartProcess(name, path string, args []string, logPath string, detach bool) (*Process, error) {
	p, err := startProc(name, path, args, logPath, detach)
	if err != nil {
		return nil, err
	}
	return &Process{p: p}, nil
}

// PID is the process id.
func (p *Process) PID() int { return p.p.pid }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	gone, _ := p.p.exited()
	return gone
}

// ExitErr is how the process ended ("signal: killed", "exited with status
// 0"), nil while it runs.
func (p *Process) ExitErr() error {
	gone, err := p.p.exited()
	if !gone {
		return nil
	}
	return err
}

// Stop sends SIGTERM, waits up to grace, then SIGKILLs.
func (p *Process) Stop(grace time.Duration) error { return p.p.stop(grace) }

// Terminate sends SIGTERM and waits up to grace for the process to end, as
// the kubelet waits a pod's terminationGracePeriodSeconds, then SIGKILLs it
// as the kubelet would. It reports whether the process ended within grace.
func (p *Process) Terminate(grace time.Duration) (inTime bool, err error) {
	if p.Exited() {
		return true, nil
	}
	if err := syscall.Kill(p.p.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return false, fmt.Errorf("signal %s (pid %d): %w", p.p.name, p.p.pid, err)
	}
	if p.p.waitGone(grace) {
		return true, nil
	}
	return false, p.Kill()
}

// Kill sends SIGKILL at once (no shutdown, no flush) and waits for the end.
func (p *Process) Kill() error {
	if p.Exited() {
		return nil
	}
	if err := syscall.Kill(p.p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.p.name, p.p.pid, err)
	}
	if !p.p.waitGone(10 * time.Second) {
		return fmt.Errorf("%s (pid %d) still running after SIGKILL", p.p.name, p.p.pid)
	}
	return nil
}
