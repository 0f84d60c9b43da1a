package env

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

// Truth is the simulated usage right now, as the model computes it.
type Truth struct {
	Nodes map[string]Usage `json:"nodes"`
	Pods  map[string]struct {
		Containers map[string]Usage `json:"containers"`
		RPS        float64          `json:"rps"`
	} `json:"pods"`
}

// Usage is cpu in cores and memory in bytes.
type Usage struct {
	CPUCores    float64 `json:"cpuCores"`
	MemoryBytes float64 `json:"memoryBytes"`
}

var simClient = &http.Client{Timeout: 10 * time.Second}

// SimTruth reads the simulated usage.
func (e *Env) SimTruth(ctx context.Context) (Truth, error) {
	var t Truth
	return t, e.simGet(ctx, "/truth", &t)
}

// KubeletTokens lists the distinct bearer tokens the simulated kubelets
// received and reviewed with the API server (not the static --token-file).
func (e *Env) KubeletTokens(ctx context.Context) ([]sim.SeenToken, error) {
	var seen []sim.SeenToken
	return seen, e.simGet(ctx, "/kubelet-tokens", &seen)
}

// simGet decodes the JSON answer of the simulator's control API at path.
func (e *Env) simGet(ctx context.Context, path string, out any) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.SimControl+path, nil)
	resp, err := simClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (e *Env) simPost(ctx context.Context, path, body string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.SimControl+path, strings.NewReader(body))
	resp, err := simClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, b)
	}
	return nil
}

// SetKubeletMode makes a simulated kubelet answer ok, garbage, 500 or hang.
func (e *Env) SetKubeletMode(ctx context.Context, node, mode string) error {
	return e.simPost(ctx, "/nodes/"+node+"/mode", mode)
}

// SetQueueDepth sets the queue_depth gauge of the running pod ns/name.
func (e *Env) SetQueueDepth(ctx context.Context, ns, name string, depth float64) error {
	return e.simPost(ctx, "/pods/"+ns+"/"+name+"/queue-depth", fmt.Sprint(depth))
}

// SetExtraCPU sets cores of cpu usage the running pod ns/name uses beyond
// its model, from now on: a step in its usage.
func (e *Env) SetExtraCPU(ctx context.Context, ns, name string, cores float64) error {
	return e.simPost(ctx, "/pods/"+ns+"/"+name+"/extra-cpu", fmt.Sprint(cores))
}
