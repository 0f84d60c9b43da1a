package env

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
)

// ReceiveReplicaLabel is the external label each Thanos receiver adds to
// what it stores, which the querier deduplicates on.
const ReceiveReplicaLabel = "receive_replica"

// Thanos is the scale-out scenario's engine (docs/scale-out.md), built by
// test/hack/build-thanos.sh: two receivers, each storing every series the
// gateways write it (the gateways write both, as a hashring of two with
// replication factor 2 places every series twice), and a querier over
// both that deduplicates on ReceiveReplicaLabel and the gateways'
// gateway_replica. Everything listens on 127.0.0.1.
type Thanos struct {
	Receivers [2]*ThanosReceiver
	// QueryURL is the querier's Prometheus HTTP API root.
	QueryURL string
	query    *Command
}

// ThanosReceiver is one `thanos receive`.
type ThanosReceiver struct {
	Name string
	// RemoteWriteURL is where gateways remote-write.
	RemoteWriteURL string
	grpc, http     string
	cmd            *Command
}

// StartThanos starts the receivers and the querier from BinDir/thanos and
// waits until each is ready. The caller stops them (Stop).
func (e *Env) StartThanos(ctx context.Context) (*Thanos, error) {
	bin := filepath.Join(e.BinDir, "thanos")
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s missing (run make e2e-build): %w", bin, err)
	}
	port := func() string {
		p, err := cluster.FreePort()
		if err != nil {
			return "127.0.0.1:1"
		}
		return fmt.Sprintf("127.0.0.1:%d", p)
	}
	t := &Thanos{}
	endpoints := []string{}
	for i := range t.Receivers {
		name := fmt.Sprintf("thanos-receive-%d", i)
		r := &ThanosReceiver{Name: name, grpc: port(), http: port()}
		write := port()
		r.RemoteWriteURL = "http://" + write + "/api/v1/receive"
		r.cmd = &Command{Name: name, Path: bin, LogPath: filepath.Join(e.Dir, name+".log"), Detach: e.Detach, Args: []string{
			"receive",
			"--tsdb.path", filepath.Join(e.Dir, name+"-data"),
			"--tsdb.retention", "6h",
			"--grpc-address", r.grpc,
			"--http-address", r.http,
			"--remote-write.address", write,
			"--receive.capnproto-address", port(),
			"--label", fmt.Sprintf(`%s="r%d"`, ReceiveReplicaLabel, i),
			"--log.level", "warn",
		}}
		t.Receivers[i] = r
		endpoints = append(endpoints, "--endpoint", r.grpc)
	}
	httpAddr := port()
	t.QueryURL = "http://" + httpAddr
	t.query = &Command{Name: "thanos-query", Path: bin, LogPath: filepath.Join(e.Dir, "thanos-query.log"), Detach: e.Detach, Args: append([]string{
		"query",
		"--http-address", httpAddr,
		"--grpc-address", port(),
		"--query.replica-label", ReceiveReplicaLabel,
		"--query.replica-label", "gateway_replica",
		"--log.level", "warn",
	}, endpoints...)}
	for _, r := range t.Receivers {
		if err := r.Start(ctx); err != nil {
			t.Stop()
			return nil, err
		}
	}
	if err := t.StartQuery(ctx); err != nil {
		t.Stop()
		return nil, err
	}
	return t, nil
}

// Start starts the receiver (again, on the same storage) and waits until
// it is ready.
func (r *ThanosReceiver) Start(ctx context.Context) error {
	if err := r.cmd.Start(); err != nil {
		return err
	}
	return waitReady(ctx, r.cmd, "http://"+r.http+"/-/ready")
}

// Kill ends the receiver with SIGKILL.
func (r *ThanosReceiver) Kill() error { return r.cmd.Kill() }

// LogTail is the end of the receiver's log.
func (r *ThanosReceiver) LogTail(n int) string { return r.cmd.Tail(n) }

// StartQuery starts the querier (again) and waits until it is ready.
func (t *Thanos) StartQuery(ctx context.Context) error {
	if err := t.query.Start(); err != nil {
		return err
	}
	return waitReady(ctx, t.query, t.QueryURL+"/-/ready")
}

// StopQuery stops the querier: the engine is unreachable.
func (t *Thanos) StopQuery() error { return t.query.Stop() }

// QueryLogTail is the end of the querier's log.
func (t *Thanos) QueryLogTail(n int) string { return t.query.Tail(n) }

// Stop stops every Thanos process.
func (t *Thanos) Stop() {
	_ = t.query.Stop()
	for _, r := range t.Receivers {
		if r != nil {
			_ = r.cmd.Stop()
		}
	}
}

func waitReady(ctx context.Context, c *Command, url string) error {
	err := poll(ctx, time.Minute, c.Name+" ready", func() error {
		if c.Exited() {
			return fmt.Errorf("%s exited: %v", c.Name, c.ExitErr())
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w; log:\n%s", err, c.Tail(20))
	}
	return nil
}

// PID is the receiver's process id, 0 when it is not running.
func (r *ThanosReceiver) PID() int { return r.cmd.PID() }

// QueryPID is the querier's process id, 0 when it is not running.
func (t *Thanos) QueryPID() int { return t.query.PID() }

// EngineSample is one series of an instant vector from the querier.
type EngineSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// Float is the sample's value.
func (s EngineSample) Float() float64 {
	v, _ := s.Value[1].(string)
	f, _ := strconv.ParseFloat(v, 64)
	return f
}

// Query evaluates expr on the querier now; dedup false keeps the
// receivers' and replicas' copies apart (and their replica labels).
func (t *Thanos) Query(ctx context.Context, expr string, dedup bool) ([]EngineSample, error) {
	q := url.Values{"query": {expr}, "dedup": {strconv.FormatBool(dedup)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.QueryURL+"/api/v1/query?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []EngineSample `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("%s: %s: %w", expr, resp.Status, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("%s: %s %s", expr, resp.Status, body.Error)
	}
	return body.Data.Result, nil
}
