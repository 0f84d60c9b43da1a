package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Process is a child process: a control-plane component, a simulated
// kubelet or a server under test. Either it was started by this process
// (cmd set, done closed when it exits) or found again by Attach from
// Dir/pids (pid only). Its output is appended to a log file.
type Process struct {
	name    string
	pid     int
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error
}

// StartProcess runs path with args, stdout and stderr appended to logPath.
//
// Attached (detach=false) children get Pdeathsig=SIGKILL so a test binary that panics or
// is killed by `go test -timeout` leaves no apiserver behind. Pdeathsig fires when the
// forking OS thread exits; the Go runtime only retires threads whose goroutine exits
// while locked with runtime.LockOSThread, which nothing here does.
//
// Detached children get their own session (Setsid) so they outlive the CLI and ignore
// the terminal's SIGINT/SIGHUP; `localcluster down` stops them by PID.
func StartProcess(name, path string, args []string, logPath string, detach bool) (*Process, error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s log: %w", name, err)
	}
	// The child holds its own descriptor after Start; ours is only needed until then.
	defer logFile.Close()
	fmt.Fprintf(logFile, "==> %s %s %s\n", time.Now().Format(time.RFC3339), path, strings.Join(args, " "))

	cmd := exec.Command(path, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, pid: cmd.Process.Pid, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited reports whether the process is gone, and how it ended when we know.
func (p *Process) exited() (bool, error) {
	if p.done != nil {
		select {
		case <-p.done:
			if p.waitErr == nil {
				return true, errors.New("exited with status 0")
			}
			return true, p.waitErr
		default:
			return false, nil
		}
	}
	if pidAlive(p.pid) {
		return false, nil
	}
	return true, errors.New("not running")
}

// Stop sends SIGTERM, waits up to grace for a clean exit (etcd and the apiserver flush
// on TERM), then SIGKILLs.
func (p *Process) Stop(grace time.Duration) error {
	if gone, _ := p.exited(); gone {
		return nil
	}
	if err := syscall.Kill(p.pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal %s (pid %d): %w", p.name, p.pid, err)
	}
	if p.waitGone(grace) {
		return nil
	}
	if err := syscall.Kill(p.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s (pid %d): %w", p.name, p.pid, err)
	}
	if !p.waitGone(5 * time.Second) {
		return fmt.Errorf("%s (pid %d) still running after SIGKILL", p.name, p.pid)
	}
	return nil
}

func (p *Process) waitGone(timeout time.Duration) bool {
	if p.done != nil {
		select {
		case <-p.done:
			return true
		case <-time.After(timeout):
			return false
		}
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !pidAlive(p.pid) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return !pidAlive(p.pid)
}

// pidAlive treats zombies as dead: a detached child whose new parent does not reap it
// stays in the process table after it exits, and kill(pid, 0) would still succeed.
func pidAlive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may itself contain ") ".
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return false
	}
	state := stat[i+2]
	return state != 'Z' && state != 'X'
}

// pidOwnedBy reports whether pid's command line mentions dir. Every component's flags
// name files under Dir, so this tells our processes from an unrelated one that reused a
// recorded PID after a reboot — `down` must never kill a stranger.
func pidOwnedBy(pid int, dir string) bool {
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(dir))
}

// handedOut holds every port freePorts has returned in this process. A
// port is free to the kernel from the moment its probe listener closes
// until the component it was chosen for binds it, so without this two
// callers (or two calls of one caller that start their processes later,
// as StartThanos does) can be given the same port: CI once started two
// Thanos receivers on one remote-write port.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePorts returns n free TCP ports on 127.0.0.1, distinct from each
// other and from every port returned before in this process. Each probe
// listener is held until every port is chosen, so the kernel cannot offer
// the same port twice; another process may still grab one before our
// component binds it, which start-up reports as a bind error.
func freePorts(n int) ([]int, error) {
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	handedOut.Lock()
	defer handedOut.Unlock()
	ports := make([]int, 0, n)
	for len(ports) < n {
		if len(listeners) >= n+1000 {
			return nil, fmt.Errorf("pick free port: %d probes found only %d ports not handed out before", len(listeners), len(ports))
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("pick free port: %w", err)
		}
		listeners = append(listeners, l)
		if p := l.Addr().(*net.TCPAddr).Port; !handedOut.ports[p] {
			handedOut.ports[p] = true
			ports = append(ports, p)
		}
	}
	return ports, nil
}

// FreePort returns a free TCP port on 127.0.0.1 for a process the caller starts.
func FreePort() (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}
