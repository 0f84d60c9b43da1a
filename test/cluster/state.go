package cluster

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// state is Dir/cluster.json: what Attach needs besides the PIDs.
type state struct {
	Ports    Ports  `json:"ports"`
	Host     string `json:"host"`
	Detached bool   `json:"detached"`
}

func writeState(l layout, s state) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(l.stateFile(), append(data, '\n'), 0o644)
}

// writePids rewrites Dir/pids ("<component> <pid>" per line) after every start, so a
// start-up that dies half way still leaves `localcluster down` enough to clean up.
func writePids(l layout, procs []*Process) error {
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "%s %d\n", p.name, p.pid)
	}
	tmp := l.pidsFile() + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, l.pidsFile())
}

func readPids(l layout) ([]*Process, error) {
	f, err := os.Open(l.pidsFile())
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var procs []*Process
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 2 {
			continue
		}
		pid, err := strconv.Atoi(fields[1])
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("%s: bad line %q", l.pidsFile(), sc.Text())
		}
		procs = append(procs, &Process{name: fields[0], pid: pid, logPath: l.log(fields[0])})
	}
	return procs, sc.Err()
}

// Attach returns the Cluster recorded in dir by an earlier Start (typically a detached
// one from `localcluster up`), for Stop, Status, LogTails and the gateway helpers. A
// recorded PID that now belongs to some other program is dropped, never signalled.
func Attach(dir string) (*Cluster, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	l := layout{dir: abs}
	data, err := os.ReadFile(l.stateFile())
	if err != nil {
		return nil, fmt.Errorf("no cluster recorded in %s: %w", abs, err)
	}
	var s state
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", l.stateFile(), err)
	}
	c := &Cluster{Dir: abs, Kubeconfig: l.kubeconfig(adminName), Host: s.Host, Ports: s.Ports,
		layout: l, out: os.Stdout}
	procs, err := readPids(l)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	for _, p := range procs {
		if pidAlive(p.pid) && pidOwnedBy(p.pid, abs) {
			c.procs = append(c.procs, p)
		}
	}
	return c, nil
}

func (c *Cluster) anyRunning() bool {
	for _, p := range c.procs {
		if gone, _ := p.exited(); !gone {
			return true
		}
	}
	return false
}

// ComponentStatus is one line of Status.
type ComponentStatus struct {
	Name    string
	PID     int   // 0 when not running
	Healthy error // nil when the health endpoint answered ok
}

// Status probes every component's health endpoint. It works for both a started and an
// attached Cluster.
func (c *Cluster) Status(ctx context.Context) []ComponentStatus {
	checks := []struct{ name, url, want, leaf string }{
		{etcdComponent, fmt.Sprintf("http://127.0.0.1:%d/health", c.Ports.EtcdClient), `"health":"true"`, ""},
		{apiserverComponent, c.Host + "/readyz", "ok", adminName},
		{kcmComponent, fmt.Sprintf("https://127.0.0.1:%d/healthz", c.Ports.ControllerManager), "ok", ""},
		{schedComponent, fmt.Sprintf("https://127.0.0.1:%d/healthz", c.Ports.Scheduler), "ok", ""},
	}
	var out []ComponentStatus
	for _, ch := range checks {
		st := ComponentStatus{Name: ch.name}
		for _, p := range c.procs {
			if gone, _ := p.exited(); p.name == ch.name && !gone {
				st.PID = p.pid
			}
		}
		client, err := httpClient(c.layout, ch.leaf)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = probe(pctx, client, ch.url, ch.want)
			cancel()
		}
		st.Healthy = err
		out = append(out, st)
	}
	return out
}

// LogTails returns the last n lines of every component's log, each under a header, in
// start order: what a failing end-to-end test should print.
func (c *Cluster) LogTails(n int) string {
	var b strings.Builder
	for _, name := range []string{etcdComponent, apiserverComponent, kcmComponent, schedComponent} {
		path := c.layout.log(name)
		tail, err := tailFile(path, n)
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "----- %s (last %d lines of %s) -----\n%s\n", name, n, path, tail)
	}
	return b.String()
}

// tailFile reads at most the last 1 MiB: component logs grow without bound and n lines
// of klog never need more.
func tailFile(path string, n int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	const maxTail = 1 << 20
	if fi, err := f.Stat(); err == nil && fi.Size() > maxTail {
		if _, err := f.Seek(fi.Size()-maxTail, io.SeekStart); err != nil {
			return "", err
		}
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return "", err
	}
	return lastLines(string(data), n), nil
}
