package cluster

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// RestartAPIServer stops kube-apiserver and starts it again on the same port,
// etcd and certificates, with its standard arguments passed through edit
// (nil keeps them), and returns once /readyz answers. End-to-end tests use it
// to misconfigure the aggregation layer on purpose, then to restore it.
// Only a Cluster from Start can restart; one found by Attach cannot.
func (c *Cluster) RestartAPIServer(ctx context.Context, edit func(args []string) []string) error {
	i := -1
	for j, p := range c.procs {
		if p.name == apiserverComponent {
			i = j
		}
	}
	if i < 0 || c.opts.BinDir == "" {
		return errors.New("cluster: no kube-apiserver started by this process to restart")
	}
	begin := time.Now()
	if err := c.procs[i].stop(30 * time.Second); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	args := apiserverArgs(c.layout, c.Ports)
	if edit != nil {
		args = edit(args)
	}
	p, err := startProc(apiserverComponent, filepath.Join(c.opts.BinDir, apiserverComponent), args, c.layout.log(apiserverComponent), c.opts.Detach)
	if err != nil {
		return err
	}
	c.procs[i] = p
	if err := writePids(c.layout, c.procs); err != nil {
		return err
	}
	client, err := httpClient(c.layout, adminName)
	if err != nil {
		return err
	}
	check := func(ctx context.Context) error { return probe(ctx, client, c.Host+"/readyz", "ok") }
	if err := waitReady(ctx, p, c.opts.ComponentTimeout, check); err != nil {
		return err
	}
	c.progress("kube-apiserver restarted (pid %d, %s)", p.pid, since(begin))
	return nil
}

// ReplaceArg returns args with the flag name's value set to value, added
// when absent: for RestartAPIServer's edit.
func ReplaceArg(args []string, name, value string) []string {
	out := make([]string, 0, len(args)+1)
	prefix := "--" + name + "="
	found := false
	for _, a := range args {
		if len(a) >= len(prefix) && a[:len(prefix)] == prefix {
			a, found = prefix+value, true
		}
		out = append(out, a)
	}
	if !found {
		out = append(out, prefix+value)
	}
	return out
}
