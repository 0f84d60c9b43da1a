package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
	"github.com/metrics-gateway/metrics-gateway/test/env"
)

// ScaleOut is what a scale-out run measured besides Result.Usage (replica
// 0's): each replica's usage and targets, and the engine's processes.
type ScaleOut struct {
	Replicas [2]Usage
	// Targets is how many annotated pods each replica scrapes, from the
	// engine's up series.
	Targets [2]int
	// Engine is the usage of thanos-receive-0, thanos-receive-1 and
	// thanos-query, by name.
	Engine map[string]Usage
}

// RunScaleOut measures the scale-out mode with every pod annotated: Thanos
// (two receivers, one querier; env.StartThanos) and two gateway replicas
// with --shards 2, each remote-writing to both receivers and evaluating
// custom metrics through the querier, as manifests/overlays/scale-out runs
// them. The APIServices point at replica 0, whose custom-metric latency
// (through the engine) is measured as the single-process runs' is. No
// prefill: the receivers would not hold it.
func (w *World) RunScaleOut(ctx context.Context, run int, o RunOptions) (r Result, err error) {
	r = Result{Scale: w.Scale, Kind: Gateway, Run: run, Latency: map[string]map[string]Latency{}, Ingest: true, ScaleOut: &ScaleOut{Engine: map[string]Usage{}}}
	start := time.Now()
	th, err := w.Env.StartThanos(ctx)
	if err != nil {
		return r, err
	}
	defer th.Stop()
	reps, err := w.startScaleOutReplicas(ctx, o, th)
	defer func() {
		for _, s := range reps {
			if s != nil {
				err = errors.Join(err, s.Stop())
			}
		}
	}()
	if err != nil {
		return r, err
	}
	if err := reps[0].Register(ctx, [2]string{"metrics.k8s.io", "v1beta1"}, [2]string{"custom.metrics.k8s.io", "v1beta2"}); err != nil {
		return r, err
	}
	if err := w.waitEngine(ctx, th, reps[0], &r); err != nil {
		return r, err
	}
	w.progress("scale-out #%d serving every target through the engine after %s (replicas %v)", run, time.Since(start).Round(time.Second), r.ScaleOut.Targets)
	time.Sleep(2 * o.Resolution)
	pids := map[string]int{"replica-0": reps[0].PID(), "replica-1": reps[1].PID(), "thanos-query": th.QueryPID()}
	for _, rc := range th.Receivers {
		pids[rc.Name] = rc.PID()
	}
	usage, err := measureAll(pids, o.Rounds, o.Resolution)
	if err != nil {
		return r, err
	}
	r.ScaleOut.Replicas = [2]Usage{usage["replica-0"], usage["replica-1"]}
	r.Usage = usage["replica-0"]
	for name, u := range usage {
		if name != "replica-0" && name != "replica-1" {
			r.ScaleOut.Engine[name] = u
		}
	}
	for i, u := range r.ScaleOut.Replicas {
		w.progress("scale-out #%d replica %d idle: RSS %s, CPU/round %.2fs, %d targets", run, i, mb(u.SteadyRSS), u.CPUPerRound.Seconds(), r.ScaleOut.Targets[i])
	}
	q := CustomQuery()
	r.Latency[q.Name] = map[string]Latency{}
	for _, via := range []string{"direct", "aggregator"} {
		l, err := w.measure(ctx, reps[0], q, via, o.Requests)
		if err != nil {
			return r, fmt.Errorf("scale-out %s %s: %w", q.Name, via, err)
		}
		r.Latency[q.Name][via] = l
		w.progress("scale-out #%d %-32s %-10s p50 %6.1f ms  p99 %6.1f ms  (%d items, n=%d)", run, q.Name, via, ms(l.P50), ms(l.P99), l.Items, l.N)
	}
	for i, s := range reps {
		last, err := ReadProc(s.PID())
		if err != nil {
			return r, err
		}
		r.ScaleOut.Replicas[i].PeakRSS = last.HWM
	}
	r.Usage.PeakRSS = r.ScaleOut.Replicas[0].PeakRSS
	if o.ProfileDir != "" {
		for i, s := range reps {
			if err := w.profiles(ctx, s, o, fmt.Sprintf("%s-scale-out-replica-%d-%d", w.Scale, i, run)); err != nil {
				return r, err
			}
		}
	}
	return r, nil
}

// startScaleOutReplicas starts both replicas at once.
func (w *World) startScaleOutReplicas(ctx context.Context, o RunOptions, th *env.Thanos) ([2]*Server, error) {
	config := fmt.Sprintf(`apiVersion: metrics-gateway.io/v1alpha1
kind: GatewayConfig
remoteWrite:
- url: %s
- url: %s
queryBackend:
  url: %s
`, th.Receivers[0].RemoteWriteURL, th.Receivers[1].RemoteWriteURL, th.QueryURL)
	var reps [2]*Server
	var errs [2]error
	var wg sync.WaitGroup
	for i := range reps {
		dir, err := os.MkdirTemp(w.Dir, fmt.Sprintf("scale-out-%d-", i))
		if err != nil {
			return reps, err
		}
		g, err := w.Env.NewGateway(ctx, env.GatewayOptions{
			Name: fmt.Sprintf("metrics-gateway-%d", i), Bin: o.Tools.Gateway, StoragePath: filepath.Join(dir, "data"),
			Config: []byte(config), Resolution: o.Resolution, Verbosity: 1, Args: []string{"--cert-dir", dir, "--shards", "2"},
		})
		if err != nil {
			return reps, err
		}
		s := &Server{Kind: Gateway, Dir: dir, w: w, Port: g.Port, proc: g.Command()}
		s.proc.LogPath = filepath.Join(dir, "metrics-gateway.log")
		s.proc.Env = []string{fmt.Sprintf("POD_NAME=metrics-gateway-%d", i)}
		reps[i] = s
		wg.Go(func() { errs[i] = s.start(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			reps[i] = nil
		}
	}
	return reps, errors.Join(errs[:]...)
}

// waitEngine waits until the engine has every annotated pod's up from one
// replica or the other, and replica 0 answers the custom metric for the
// whole group; it records each replica's targets in r.
func (w *World) waitEngine(ctx context.Context, th *env.Thanos, rep0 *Server, r *Result) error {
	return cluster.Poll(ctx, 2*time.Second, 10*time.Minute, "the engine holding every pod target", func() error {
		// Each receiver holds a copy: count pods, not series.
		by, err := engineVector(ctx, th, `count by (gateway_replica) (count by (gateway_replica, namespace, pod) (up{job="kubernetes-pods"} == 1))`)
		if err != nil {
			return err
		}
		total := 0
		for i := range r.ScaleOut.Targets {
			r.ScaleOut.Targets[i] = int(by[fmt.Sprintf("metrics-gateway-%d", i)])
			total += r.ScaleOut.Targets[i]
		}
		if total < w.Scale.Pods() {
			return fmt.Errorf("%d of %d pod targets up in the engine (%v)", total, w.Scale.Pods(), by)
		}
		n, err := itemCount(w.get(ctx, rep0, "direct", CustomQuery().Path))
		if err == nil && n < min(GroupSize, w.Scale.Pods()) {
			err = fmt.Errorf("custom metric through the engine: %d of %d pods", n, GroupSize)
		}
		return err
	})
}

// engineVector evaluates expr on the querier, by gateway_replica.
func engineVector(ctx context.Context, th *env.Thanos, expr string) (map[string]float64, error) {
	res, err := th.Query(ctx, expr, false)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range res {
		out[s.Metric["gateway_replica"]] = s.Float()
	}
	return out, nil
}

// measureAll measures every process over the same idle rounds.
func measureAll(pids map[string]int, rounds int, resolution time.Duration) (map[string]Usage, error) {
	var mu sync.Mutex
	out := map[string]Usage{}
	var errs []error
	var wg sync.WaitGroup
	for name, pid := range pids {
		wg.Go(func() {
			u, err := MeasureIdle(pid, rounds, resolution)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				return
			}
			out[name] = u
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}
