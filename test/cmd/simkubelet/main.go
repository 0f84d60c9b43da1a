package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/metrics-gateway/metrics-gateway/test/sim"
	"github.com/metrics-gateway/metrics-gateway/test/sim/kubeagent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	klog.Flush()
	if err != nil {
		fmt.Fprintln(os.Stderr, "simkubelet:", err)
		os.Exit(1)
	}
}

// run serves until ctx ends, then shuts down. Nothing is deleted from the API
// server unless --delete-nodes-on-exit is given, so a restarted simulator adopts
// its nodes and pods.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("simkubelet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	o.addFlags(fs)
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg, err := o.complete()
	if err != nil {
		return err
	}
	version, err := sim.KubeletVersion()
	if err != nil {
		return err
	}
	sim.PinKubeletVersion(version)

	s, err := sim.New(sim.Config{Nodes: cfg.nodeConfigs, PodCIDRBase: cfg.podBase, Clock: clock.RealClock{}})
	if err != nil {
		return err
	}
	cert, err := sim.GenerateCerts(cfg.certDir, cfg.nodeConfigs)
	if err != nil {
		return err
	}
	client, err := apiClient(cfg, version)
	if err != nil {
		return errors.Join(err, s.Close())
	}
	// Bearer tokens other than --token-file's are reviewed as a kubelet in
	// webhook mode reviews them (TokenReview, SubjectAccessReview).
	s.SetWebhookAuth(sim.NewWebhookAuth(client))
	if err := s.ServeKubelets(cfg.kubeletPort, cert, cfg.token, cfg.clientCAs); err != nil {
		return errors.Join(err, s.Close())
	}
	control, controlAddr, err := serveControl(cfg.controlAddr, s.ControlHandler())
	if err != nil {
		return errors.Join(err, s.Close())
	}

	// The agent gets its own context so a failed start can stop what it began.
	agentCtx, stopAgent := context.WithCancel(ctx)
	defer stopAgent()
	agent, err := kubeagent.New(kubeagent.Config{Client: client, Sim: s, KubeletPort: cfg.kubeletPort, KubeletVersion: version})
	if err == nil {
		err = agent.Start(agentCtx)
	}
	if err == nil {
		err = announce(stdout, cfg.controlFile, controlAddr)
	}
	if err == nil {
		<-ctx.Done()
		klog.InfoS("Shutting down")
	}
	stopAgent()
	return errors.Join(err, shutdown(cfg, agent, control, s))
}

func apiClient(cfg config, version string) (kubernetes.Interface, error) {
	rc, err := clientcmd.BuildConfigFromFlags("", cfg.kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("load kubeconfig %s: %w", cfg.kubeconfig, err)
	}
	// Many pods can start at once in a scale test; the default 5 QPS would make the
	// status reports the bottleneck.
	rc.QPS, rc.Burst = 50, 100
	rc.UserAgent = "simkubelet/" + version
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("API client: %w", err)
	}
	return client, nil
}

func serveControl(addr string, h http.Handler) (*http.Server, string, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("control API: listen %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Control API stopped", "addr", l.Addr().String())
		}
	}()
	return srv, l.Addr().String(), nil
}

// announce tells the harness the simulator is ready; the file is written whole so
// a poller never reads a partial address.
func announce(stdout io.Writer, file, addr string) error {
	if file != "" {
		if err := sim.WriteFileAtomic(file, []byte(addr+"\n")); err != nil {
			return fmt.Errorf("--control-file: %w", err)
		}
	}
	klog.InfoS("Ready", "control", "http://"+addr)
	if _, err := fmt.Fprintf(stdout, "control: http://%s\n", addr); err != nil {
		return fmt.Errorf("announce control address: %w", err)
	}
	return nil
}

// shutdown stops everything run started, collecting every error; the agent's
// context has ended. agent may be nil when start-up failed before it existed.
func shutdown(cfg config, agent *kubeagent.Agent, control *http.Server, s *sim.Sim) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var errs []error
	if agent != nil {
		agent.Wait()
	}
	errs = append(errs, control.Shutdown(ctx), s.Close())
	if agent != nil && cfg.deleteNodesOnExit {
		errs = append(errs, agent.DeleteNodes(ctx))
	}
	return errors.Join(errs...)
}
