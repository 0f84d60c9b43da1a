package sim

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	testingclock "k8s.io/utils/clock/testing"
)

var update = flag.Bool("update", false, "rewrite ../../pkg/scrape/testdata/cadvisor.txt from the simulator")

// cadvisorFixture is the gateway's /metrics/cadvisor fixture, which
// TestCadvisorFixture keeps equal to what the simulator serves.
const cadvisorFixture = "../../pkg/scrape/testdata/cadvisor.txt"

// matching returns the samples of family name whose labels include want.
func matching(fams map[string]*dto.MetricFamily, name string, want map[string]string) []*dto.Metric {
	var out []*dto.Metric
	for _, m := range fams[name].GetMetric() {
		ok := 0
		for _, l := range m.GetLabel() {
			if v, set := want[l.GetName()]; set && v == l.GetValue() {
				ok++
			}
		}
		if ok == len(want) {
			out = append(out, m)
		}
	}
	return out
}

// one is the single sample of name whose labels include want.
func one(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	ms := matching(fams, name, want)
	if len(ms) != 1 {
		t.Fatalf("%d samples of %s%v, want 1", len(ms), name, want)
	}
	return ms[0]
}

func labelNames(m *dto.Metric) string {
	var names []string
	for _, l := range m.GetLabel() {
		names = append(names, l.GetName())
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// startLimited starts default/web-1 with a CPU and memory limit on app and
// none on side.
func startLimited(t *testing.T, s *Sim) *Pod {
	t.Helper()
	p, err := s.StartPod(PodSpec{
		Namespace: "default", Name: "web-1", UID: "uid-web-1", Node: "node-a",
		Containers: []string{"app", "side"}, Ports: []int{freePort(t, testPodBase.Next())},
		Images: []string{"ghcr.io/stefanprodan/podinfo:6.7.1"},
		Limits: []ContainerLimits{{CPUCores: 0.5, MemoryBytes: 256 * mib}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCadvisorMetrics checks that /metrics/cadvisor agrees with
// /metrics/resource on CPU and memory, and follows the model elsewhere.
func TestCadvisorMetrics(t *testing.T) {
	s, clk := newTestSim(t)
	p := startLimited(t, s)
	for i := range 30 {
		p.Model.ServeRequest(at(time.Duration(i) * 500 * time.Millisecond))
	}
	clk.Step(15 * time.Second)
	srv := httptest.NewServer(s.KubeletHandler(s.Node("node-a"), testToken))
	defer srv.Close()
	scrape := func(path string) map[string]*dto.MetricFamily {
		code, body := get(t, nil, srv.URL+path, testToken)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		return parseExposition(t, body)
	}
	cad, res := scrape("/metrics/cadvisor"), scrape("/metrics/resource")

	for _, f := range []string{
		"container_cpu_usage_seconds_total", "container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total",
		"container_cpu_cfs_throttled_seconds_total", "container_memory_working_set_bytes", "container_memory_rss",
		"container_network_receive_bytes_total", "container_network_transmit_bytes_total",
		"container_network_receive_packets_dropped_total", "container_fs_usage_bytes", "container_fs_limit_bytes",
		"container_fs_reads_bytes_total", "container_fs_writes_bytes_total", "container_spec_cpu_quota",
		"container_spec_memory_limit_bytes", "machine_cpu_cores", "machine_memory_bytes",
	} {
		if len(cad[f].GetMetric()) == 0 {
			t.Errorf("no %s", f)
		}
	}

	pod := map[string]string{"namespace": "default", "pod": "web-1"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"namespace": "default", "pod": "web-1"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	same := func(what string, c, r *dto.Metric) {
		t.Helper()
		if value(c) != value(r) || c.GetTimestampMs() != r.GetTimestampMs() {
			t.Errorf("%s: cadvisor %v@%d, resource %v@%d", what, value(c), c.GetTimestampMs(), value(r), r.GetTimestampMs())
		}
	}
	for _, c := range []string{"app", "side"} {
		for _, f := range []string{"container_cpu_usage_seconds_total", "container_memory_working_set_bytes"} {
			same(c+" "+f, one(t, cad, f, with("container", c)), sample(res, f, with("container", c)))
		}
	}
	// The pod cgroup has no image; the sandbox has the pause image.
	podCgroup := with("container", "", "image", "")
	same("pod cpu", one(t, cad, "container_cpu_usage_seconds_total", podCgroup), sample(res, "pod_cpu_usage_seconds_total", pod))
	same("pod memory", one(t, cad, "container_memory_working_set_bytes", podCgroup), sample(res, "pod_memory_working_set_bytes", pod))
	root := map[string]string{"id": "/"}
	same("node cpu", one(t, cad, "container_cpu_usage_seconds_total", root), sample(res, "node_cpu_usage_seconds_total", map[string]string{}))
	same("node memory", one(t, cad, "container_memory_working_set_bytes", root), sample(res, "node_memory_working_set_bytes", map[string]string{}))

	app := one(t, cad, "container_cpu_usage_seconds_total", with("container", "app"))
	if got, want := labelNames(app), "container,cpu,id,image,name,namespace,pod"; got != want {
		t.Errorf("labels %s, want %s", got, want)
	}
	id := ContainerID("uid-web-1", "app")
	wantApp := with("container", "app", "cpu", "total", "name", id, "image", "ghcr.io/stefanprodan/podinfo:6.7.1",
		"id", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-poduid_web_1.slice/cri-containerd-"+id+".scope")
	if len(matching(cad, "container_cpu_usage_seconds_total", wantApp)) != 1 {
		t.Errorf("app series %v, want %v", app.GetLabel(), wantApp)
	}

	// 30 requests, the network counters' only source, on the sandbox alone.
	sandbox := with("container", "", "image", PauseImage, "name", SandboxID("uid-web-1"), "interface", "eth0")
	for f, want := range map[string]float64{
		"container_network_receive_bytes_total":           30 * rxBytesPerRequest,
		"container_network_transmit_bytes_total":          30 * txBytesPerRequest,
		"container_network_receive_packets_total":         30 * rxPacketsPerRequest,
		"container_network_receive_packets_dropped_total": 0,
	} {
		approx(t, f, value(one(t, cad, f, sandbox)), want)
		if n := len(matching(cad, f, pod)); n != 1 {
			t.Errorf("%s: %d series for the pod, want the sandbox's only", f, n)
		}
	}

	// app has a CPU limit: 150 periods of 100ms, one in 20 throttled; side
	// has none, so no CFS series and no quota, as cAdvisor serves them.
	for f, want := range map[string]float64{
		"container_cpu_cfs_periods_total":           150,
		"container_cpu_cfs_throttled_periods_total": 7,
		"container_cpu_cfs_throttled_seconds_total": 0.035,
		"container_spec_cpu_quota":                  50_000,
		"container_spec_memory_limit_bytes":         256 * mib,
	} {
		approx(t, f, value(one(t, cad, f, with("container", "app"))), want)
	}
	for _, f := range []string{"container_cpu_cfs_periods_total", "container_spec_cpu_quota"} {
		if n := len(matching(cad, f, with("container", "side"))); n != 0 {
			t.Errorf("%s: %d series for side, which has no CPU limit", f, n)
		}
	}
	approx(t, "side memory limit (unlimited)", value(one(t, cad, "container_spec_memory_limit_bytes", with("container", "side"))), 0)
	approx(t, "app fs usage", value(one(t, cad, "container_fs_usage_bytes", with("container", "app", "device", rootFsDevice))), containerFsBytes)
	approx(t, "app fs writes", value(one(t, cad, "container_fs_writes_bytes_total", with("container", "app", "device", diskDevice.Device))), 15*containerWriteRate)
	approx(t, "machine_cpu_cores", value(cad["machine_cpu_cores"].GetMetric()[0]), NodeCPUCores)
	approx(t, "machine_memory_bytes", value(cad["machine_memory_bytes"].GetMetric()[0]), NodeMemoryBytes)
}

// TestCadvisorCounters: between two scrapes the counters grow with time and
// requests, gauges of usage stay, and a broken /metrics/resource does not
// break /metrics/cadvisor.
func TestCadvisorCounters(t *testing.T) {
	s, clk := newTestSim(t)
	p := startLimited(t, s)
	n := s.Node("node-a")
	srv := httptest.NewServer(s.KubeletHandler(n, testToken))
	defer srv.Close()
	read := func() map[string]*dto.MetricFamily {
		code, body := get(t, nil, srv.URL+"/metrics/cadvisor", testToken)
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		return parseExposition(t, body)
	}
	clk.Step(15 * time.Second)
	before := read()
	for range 2000 {
		p.Model.ServeRequest(clk.Now())
	}
	clk.Step(15 * time.Second)
	n.SetMode(Mode500)
	after := read()
	app := map[string]string{"pod": "web-1", "container": "app"}
	eth0 := map[string]string{"pod": "web-1", "interface": "eth0"}
	for _, tc := range []struct {
		family string
		labels map[string]string
		grows  bool
	}{
		{"container_cpu_usage_seconds_total", app, true},
		{"container_cpu_cfs_periods_total", app, true},
		{"container_cpu_cfs_throttled_periods_total", app, true},
		{"container_fs_writes_bytes_total", app, true},
		{"container_network_receive_bytes_total", eth0, true},
		{"container_network_receive_packets_dropped_total", eth0, true},
		{"container_fs_usage_bytes", app, false},
		{"container_spec_cpu_quota", app, false},
	} {
		b, a := value(one(t, before, tc.family, tc.labels)), value(one(t, after, tc.family, tc.labels))
		if grows := a > b; grows != tc.grows || a < b {
			t.Errorf("%s: %g then %g, want growing=%v", tc.family, b, a, tc.grows)
		}
	}
	ratio := value(one(t, after, "container_cpu_cfs_throttled_periods_total", app)) / value(one(t, after, "container_cpu_cfs_periods_total", app))
	if ratio <= 0 || ratio > 0.06 {
		t.Errorf("throttling ratio %g, want about 1/%d", ratio, throttledEvery)
	}
	// A stopped pod's series are gone at the next scrape.
	if err := s.StopPod("default/web-1", ""); err != nil {
		t.Fatal(err)
	}
	if n := len(matching(read(), "container_cpu_usage_seconds_total", map[string]string{"pod": "web-1"})); n != 0 {
		t.Errorf("%d series of a stopped pod", n)
	}
}

// TestCadvisorFixture keeps the gateway's golden /metrics/cadvisor body
// equal to what the simulator serves: cAdvisor's own collectors, wired as a
// v1.37 kubelet wires them, over a node booted an hour before t0 with two
// pods started ten minutes before it. Rewrite it with
//
//	cd test && go test ./sim -run TestCadvisorFixture -update
func TestCadvisorFixture(t *testing.T) {
	body := fixtureBody(t)
	if *update {
		if err := os.WriteFile(cadvisorFixture, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(cadvisorFixture)
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != body {
		t.Errorf("%s is stale; rerun with -update (-count=1: the cache does not see it)", cadvisorFixture)
	}
}

func fixtureBody(t *testing.T) string {
	t.Helper()
	// The node boots an hour before t0, so machine_* carry a timestamp an
	// hour old, as a kubelet's do.
	clk := testingclock.NewFakeClock(t0.Add(-time.Hour))
	s, err := New(Config{Nodes: []NodeConfig{{Name: "node-a", IP: testNodeIP}}, PodCIDRBase: testPodBase, Clock: clk})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	clk.SetTime(t0.Add(-10 * time.Minute))
	web, err := s.StartPod(PodSpec{
		Namespace: "default", Name: "web-1", UID: "6f1c2a4e-3b5d-4c7e-9f80-1a2b3c4d5e6f", Node: "node-a",
		Containers: []string{"app", "sidecar"}, Ports: []int{freePort(t, testPodBase.Next())},
		Images:   []string{"ghcr.io/stefanprodan/podinfo:6.7.1", "cr.fluentbit.io/fluent/fluent-bit:3.2.2"},
		Limits:   []ContainerLimits{{CPUCores: 0.5, MemoryBytes: 256 * mib}},
		QOSClass: "Burstable",
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.StartPod(PodSpec{
		Namespace: "kube-system", Name: "dns-1", UID: "0d9e8f7a-6b5c-4d3e-8f21-0a1b2c3d4e5f", Node: "node-a",
		Containers: []string{"dns"}, Ports: []int{freePort(t, testPodBase.Next().Next())},
		Images:   []string{"registry.k8s.io/coredns/coredns:v1.12.1"},
		Limits:   []ContainerLimits{{MemoryBytes: 170 * mib}},
		QOSClass: "Burstable",
		Annotations: map[string]string{
			AnnotationCPUBase: "0.005", AnnotationMemory: "30Mi",
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// One request a second to web-1 for the last ten minutes.
	for i := range 600 {
		web.Model.ServeRequest(t0.Add(time.Duration(i-600) * time.Second))
	}
	clk.SetTime(t0)
	srv := httptest.NewServer(s.KubeletHandler(s.Node("node-a"), testToken))
	defer srv.Close()
	code, body := get(t, nil, srv.URL+"/metrics/cadvisor", testToken)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	return body
}
