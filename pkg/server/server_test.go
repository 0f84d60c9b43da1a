package server

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/metrics/pkg/apis/metrics/v1beta1"
	metricsclient "k8s.io/metrics/pkg/client/clientset/versioned"
)

// gateway is a running gateway wired to fakes, for tests.
type gateway struct {
	url     string
	client  *metricsclient.Clientset
	api     *fakeAPIServer
	kubelet map[string]*fakeKubelet
	cancel  context.CancelFunc
	done    chan error
}

// startGateway runs the whole server (storage, scrape, informers, API) in
// process against a fake API server and two fake kubelets, node-a on
// 127.0.0.2 and node-b on 127.0.0.3. Kubelets are scraped every second;
// answers use a 15s resolution, like the fixtures. Each of opts may change
// the options before they are validated.
func startGateway(t testing.TB, storagePath string, opts ...func(*Options)) *gateway {
	t.Helper()
	g := &gateway{api: newFakeAPIServer(t), kubelet: map[string]*fakeKubelet{}, done: make(chan error, 1)}
	for name, ip := range map[string]string{"node-a": "127.0.0.2", "node-b": "127.0.0.3"} {
		g.kubelet[name] = newFakeKubelet(t, name, ip)
	}
	dir := t.TempDir()
	if storagePath == "" {
		storagePath = t.TempDir()
	}
	o := NewOptions()
	o.Kubeconfig = g.api.kubeconfig(dir)
	o.StoragePath = storagePath
	o.Kubelet.Resolution = 15 * time.Second
	o.Kubelet.ScrapeInterval = time.Second
	o.Kubelet.RequestTimeout = 500 * time.Millisecond
	o.Kubelet.UseNodeStatusPort = true
	o.Kubelet.InsecureTLS = true
	o.DisableAuthForTesting = true
	// Off unless a test turns it on: a CI pod has a namespace file.
	o.ServingCert.Manage = false
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.SecureServing.Listener = ln
	o.SecureServing.BindPort = ln.Addr().(*net.TCPAddr).Port
	o.SecureServing.ServerCert.CertDirectory = dir
	for _, f := range opts {
		f(o)
	}
	if errs := o.Validate(); len(errs) > 0 {
		t.Fatalf("options: %v", errs)
	}
	cfg, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	s, err := cfg.Complete()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	go func() { g.done <- s.RunUntil(ctx) }()
	g.url = fmt.Sprintf("https://%s", ln.Addr())
	g.client = metricsclient.NewForConfigOrDie(&rest.Config{Host: g.url, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
	t.Cleanup(g.stop)
	return g
}

func (g *gateway) stop() {
	if g.cancel == nil {
		return
	}
	g.cancel()
	g.cancel = nil
	select {
	case <-g.done:
	case <-time.After(30 * time.Second):
	}
}

// get fetches path from the gateway and returns status and body.
func (g *gateway) get(t testing.TB, path string, accept string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, g.url+path, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := insecureClient().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// usage is cpu in nanocores and memory in bytes.
type usage struct{ CPU, Mem int64 }

// podUsage is one pod's answer, flattened for comparison.
type podUsage struct {
	Containers map[string]usage
	Window     time.Duration
	Timestamp  time.Time
}

func flattenPods(items []v1beta1.PodMetrics) map[string]podUsage {
	out := map[string]podUsage{}
	for _, p := range items {
		u := podUsage{Containers: map[string]usage{}, Window: p.Window.Duration, Timestamp: p.Timestamp.Time}
		for _, c := range p.Containers {
			u.Containers[c.Name] = usage{CPU: c.Usage.Cpu().ScaledValue(-9), Mem: c.Usage.Memory().Value()}
		}
		out[p.Namespace+"/"+p.Name] = u
	}
	return out
}

func keys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// serveFixtures registers node-a (zone a) and node-b (zone b) and the
// fixture pods of both (node-b's prefixed "b-"), replays the fixture rounds
// with round 2 stamped 5s ago, and returns that time.
func (g *gateway) serveFixtures(t testing.TB) time.Time {
	t.Helper()
	g.api.addNode("node-a", "127.0.0.2", g.kubelet["node-a"].port, map[string]string{"zone": "a"})
	g.api.addNode("node-b", "127.0.0.3", g.kubelet["node-b"].port, map[string]string{"zone": "b"})
	addFixturePods(g.api, "")
	addFixturePods(g.api, "b-")
	base := time.Now().Add(-5 * time.Second).Truncate(time.Second)
	g.replayRounds(t, base)
	return base
}

// replayRounds serves fixture round 1 then round 2 on node-a (and, pods
// prefixed "b-", on node-b), waiting for each to be scraped. Round 2 is
// stamped at base; round 1 15s before.
func (g *gateway) replayRounds(t testing.TB, base time.Time) {
	t.Helper()
	for _, r := range []struct {
		file string
		at   time.Time
	}{{"round1.txt", base.Add(-15 * time.Second)}, {"round2.txt", base}} {
		fixtureAt := int64(fixtureT0)
		if r.file == "round2.txt" {
			fixtureAt += 15000
		}
		g.kubelet["node-a"].setRound(t, r.file, fixtureAt, r.at, "")
		g.kubelet["node-b"].setRound(t, r.file, fixtureAt, r.at, "b-")
		for _, k := range g.kubelet {
			waitScraped(t, k)
		}
	}
}

// waitScraped waits until k has served two more scrapes: the second one
// began after the first finished, so what was set before is stored.
func waitScraped(t testing.TB, k *fakeKubelet) {
	t.Helper()
	n := k.servedCount()
	eventually(t, 20*time.Second, k.name+" scraped", func() error {
		if k.servedCount() < n+2 {
			return fmt.Errorf("served %d", k.servedCount()-n)
		}
		return nil
	})
}

func addFixturePods(api *fakeAPIServer, prefix string) {
	api.addPod("default", prefix+"web-1", map[string]string{"app": "web"})
	api.addPod("kube-system", prefix+"dns-1", map[string]string{"app": "dns"})
	api.addPod("default", prefix+"restart-1", map[string]string{"app": "restart"})
	api.addPod("default", prefix+"nodata-1", map[string]string{"app": "nodata"})
	// Known to the API, never seen by a kubelet: never answered.
	api.addPod("default", prefix+"pending-1", map[string]string{"app": "web"})
}

// TestAPIServerClientsAskForNoGzip: the informers' lists and watches ask
// kube-apiserver for uncompressed answers (restConfig's DisableCompression).
func TestAPIServerClientsAskForNoGzip(t *testing.T) {
	g := startGateway(t, "")
	eventually(t, 20*time.Second, "node and pod lists", func() error {
		g.api.mu.Lock()
		defer g.api.mu.Unlock()
		if g.api.asked["nodes"] == 0 || g.api.asked["pods"]+g.api.asked["podmeta"] == 0 {
			return fmt.Errorf("asked so far: %v", g.api.asked)
		}
		return nil
	})
	g.api.mu.Lock()
	defer g.api.mu.Unlock()
	if len(g.api.askedGzip) > 0 {
		t.Errorf("lists and watches that accepted gzip, by view: %v (of %v)", g.api.askedGzip, g.api.asked)
	}
}

// TestProfilingFlag: /debug/pprof is served by default and gone with
// --profiling=false (the flag was accepted and ignored once), and
// --enable-priority-and-fairness, which nothing applied, is not accepted.
func TestProfilingFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, http.StatusOK},
		{[]string{"--profiling=false"}, http.StatusNotFound},
	} {
		t.Run(strings.Join(append([]string{"args"}, tc.args...), " "), func(t *testing.T) {
			g := startGateway(t, "", func(o *Options) {
				if err := parseFlags(o, tc.args); err != nil {
					t.Fatal(err)
				}
			})
			eventually(t, 20*time.Second, "pprof answer", func() error {
				if code, body := g.get(t, "/debug/pprof/", ""); code != tc.want {
					return fmt.Errorf("GET /debug/pprof/: %d, want %d: %.200s", code, tc.want, body)
				}
				return nil
			})
		})
	}
	if err := parseFlags(NewOptions(), []string{"--enable-priority-and-fairness=true"}); err == nil {
		t.Error("--enable-priority-and-fairness was accepted")
	}
}

func parseFlags(o *Options, args []string) error {
	named := o.Flags()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, n := range named.Order {
		fs.AddFlagSet(named.FlagSet(n))
	}
	return fs.Parse(args)
}
