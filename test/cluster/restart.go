package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// RestartAPIServer stops kube-apiserver and starts it again on the same port,
// etcd and certificates, with its standard arguments passed through edit
// (nil keeps them), and returns once /readyz answers. End-to-end tests use it
// to misconfigure the aggregation layer on purpose, then to restore it.
// Only a Cluster from Start can restart; one found by Attach cannot.
func (c *Cluster) RestartAPIServer(ctx context.Context, edit func(args []string) []string) error {
	slot := slices.IndexFunc(c.procs, func(p *Process) bool { return p.name == apiserverComponent })
	if slot < 0 || c.opts.BinDir == "" {
		return errors.New("cluster: no kube-apiserver started by this process to restart")
	}
	begin := time.Now()
	// kube-apiserver keeps nothing of its own (etcd has it all), but on
	// TERM it waits for the controllers' open watches to drain, which
	// they never do: 30 s until the SIGKILL, for nothing.
	if err := c.procs[slot].Stop(apiserverRestartGrace); err != nil {
		return fmt.Errorf("stop kube-apiserver: %w", err)
	}
	all := c.components(c.opts)
	s := all[slices.IndexFunc(all, func(s component) bool { return s.name == apiserverComponent })]
	if edit != nil {
		s.args = edit(s.args)
	}
	p, err := c.launch(ctx, s, slot)
	if err != nil {
		return err
	}
	c.progress("kube-apiserver restarted (pid %d, %s)", p.pid, since(begin))
	return nil
}

// apiserverRestartGrace is how long RestartAPIServer lets kube-apiserver
// finish the requests in flight before it kills it.
const apiserverRestartGrace = 3 * time.Second

// ReplaceArg returns args with the flag name's value set to value, added
// when absent: for RestartAPIServer's edit.
func ReplaceArg(args []string, name, value string) []string {
	out := make([]string, 0, len(args)+1)
	prefix := "--" + name + "="
	found := false
	for _, a := range args {
		if strings.HasPrefix(a, prefix) {
			a, found = prefix+value, true
		}
		out = append(out, a)
	}
	if !found {
		out = append(out, prefix+value)
	}
	return out
}
