package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "localcluster:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  localcluster up --dir D [--bin-dir test/bin] [--etcd PATH]
  localcluster status --dir D
  localcluster down --dir D`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	fs := flag.NewFlagSet("localcluster "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "state directory (certificates, kubeconfigs, etcd data, logs, pids)")
	var binDir, etcdPath *string
	if args[0] == "up" {
		binDir = fs.String("bin-dir", "", "directory with kube-apiserver, kube-controller-manager, kube-scheduler (default test/bin)")
		etcdPath = fs.String("etcd", "", "etcd binary (default: etcd in --bin-dir, from test/hack/build-etcd.sh)")
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *dir == "" {
		return fmt.Errorf("--dir is required\n%s", usage)
	}
	switch args[0] {
	case "up":
		return up(ctx, cluster.Options{Dir: *dir, BinDir: *binDir, EtcdPath: *etcdPath, Stdout: stdout, Detach: true}, stdout)
	case "down":
		return down(*dir, stdout)
	case "status":
		return status(ctx, *dir, stdout)
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
}

// up returns once the control plane is healthy; the processes keep running. If ctx is
// cancelled (Ctrl-C) during start-up, Start stops what it had started.
func up(ctx context.Context, opts cluster.Options, stdout io.Writer) error {
	c, err := cluster.Start(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "export KUBECONFIG=%s\n", c.Kubeconfig)
	return nil
}

func down(dir string, stdout io.Writer) error {
	c, err := cluster.Attach(dir)
	if err != nil {
		return err
	}
	if err := c.Stop(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "localcluster: control plane in %s stopped\n", c.Dir)
	return nil
}

// status exits non-zero when any component is down, so scripts can use it as a check.
func status(ctx context.Context, dir string, stdout io.Writer) error {
	c, err := cluster.Attach(dir)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COMPONENT\tPID\tHEALTH")
	unhealthy := 0
	for _, s := range c.Status(ctx) {
		pid, health := "-", "ok"
		if s.PID != 0 {
			pid = fmt.Sprint(s.PID)
		}
		if s.Healthy != nil {
			health = s.Healthy.Error()
			unhealthy++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Name, pid, health)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "KUBECONFIG=%s\napiserver %s\n", c.Kubeconfig, c.Host)
	if unhealthy > 0 {
		return fmt.Errorf("%d of 4 components unhealthy", unhealthy)
	}
	return nil
}
