package scrape

import (
	"context"
	"encoding/pem"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/promql"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

func TestCadvisorJob(t *testing.T) {
	if y, err := CadvisorJobYAML(DefaultKubeletOptions(), Credentials{}, CadvisorConfig{ScrapeInterval: modelDuration(time.Minute)}); y != "" || err != nil {
		t.Fatalf("disabled: %q %v, want nothing", y, err)
	}
	y, err := CadvisorJobYAML(DefaultKubeletOptions(), Credentials{}, CadvisorConfig{Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(nil, y)
	if err != nil {
		t.Fatalf("load: %v\n%s", err, y)
	}
	sc := cfg.ScrapeConfigs[0]
	if sc.JobName != CadvisorJobName || sc.MetricsPath != "/metrics/cadvisor" || sc.Scheme != "https" {
		t.Errorf("job settings: %+v", sc)
	}
	// Scrape time, not the kubelet's (see CadvisorJobYAML), and Prometheus'
	// default protocols: cAdvisor's is ordinary text.
	if sc.HonorTimestamps || sc.HonorLabels {
		t.Errorf("honor_timestamps %v honor_labels %v, want both false", sc.HonorTimestamps, sc.HonorLabels)
	}
	if !slices.Equal(sc.ScrapeProtocols, config.DefaultScrapeProtocols) || sc.ScrapeFallbackProtocol != "" {
		t.Errorf("scrape protocols %v fallback %q, want Prometheus' defaults", sc.ScrapeProtocols, sc.ScrapeFallbackProtocol)
	}
	if sc.HTTPClientConfig.Authorization == nil || sc.HTTPClientConfig.Authorization.CredentialsFile != "/var/run/secrets/kubernetes.io/serviceaccount/token" {
		t.Errorf("in-cluster auth: %+v", sc.HTTPClientConfig.Authorization)
	}
	// No gateway limits, as on the kubelet job; the head-series cap applies.
	if sc.SampleLimit != 0 {
		t.Errorf("sample limit %d", sc.SampleLimit)
	}
}

func TestCadvisorInterval(t *testing.T) {
	for _, tc := range []struct {
		name              string
		kubelet           func(*KubeletOptions)
		cfg               CadvisorConfig
		interval, timeout time.Duration
		err               string
	}{
		{"the kubelet job's", func(*KubeletOptions) {}, CadvisorConfig{}, 15 * time.Second, 10 * time.Second, ""},
		{"test scrape interval", func(o *KubeletOptions) { o.ScrapeInterval, o.RequestTimeout = time.Second, 500*time.Millisecond }, CadvisorConfig{}, time.Second, 500 * time.Millisecond, ""},
		{"own interval keeps the flag's timeout", func(*KubeletOptions) {}, CadvisorConfig{ScrapeInterval: modelDuration(time.Minute)}, time.Minute, 10 * time.Second, ""},
		{"own interval under the flag's timeout", func(*KubeletOptions) {}, CadvisorConfig{ScrapeInterval: modelDuration(5 * time.Second)}, 5 * time.Second, 5 * time.Second, ""},
		{"own timeout", func(*KubeletOptions) {}, CadvisorConfig{ScrapeInterval: modelDuration(time.Minute), ScrapeTimeout: modelDuration(30 * time.Second)}, time.Minute, 30 * time.Second, ""},
		{"sub-second resolution", func(o *KubeletOptions) { o.Resolution, o.RequestTimeout = 1500*time.Millisecond, time.Second }, CadvisorConfig{}, 1500 * time.Millisecond, time.Second, ""},
		// Only here is the timeout checked against the flag's interval.
		{"own timeout over the flag's interval", func(*KubeletOptions) {}, CadvisorConfig{ScrapeTimeout: modelDuration(20 * time.Second)}, 0, 0, "must not exceed the cadvisor scrape interval (15s)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultKubeletOptions()
			tc.kubelet(&o)
			tc.cfg.Enabled = true
			y, err := CadvisorJobYAML(o, Credentials{}, tc.cfg)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(nil, y)
			if err != nil {
				t.Fatalf("load: %v\n%s", err, y)
			}
			sc := cfg.ScrapeConfigs[0]
			if time.Duration(sc.ScrapeInterval) != tc.interval || time.Duration(sc.ScrapeTimeout) != tc.timeout {
				t.Errorf("interval %v timeout %v, want %v %v", sc.ScrapeInterval, sc.ScrapeTimeout, tc.interval, tc.timeout)
			}
		})
	}
}

// TestCadvisorMetricFilter: kube-prometheus' drops, and nothing a container
// dashboard reads.
func TestCadvisorMetricFilter(t *testing.T) {
	y, _ := CadvisorJobYAML(DefaultKubeletOptions(), Credentials{}, CadvisorConfig{Enabled: true})
	cfg, err := LoadConfig(nil, y)
	if err != nil {
		t.Fatal(err)
	}
	rules := cfg.ScrapeConfigs[0].MetricRelabelConfigs
	inPod := func(name string) labels.Labels {
		return labels.FromStrings("__name__", name, "namespace", "default", "pod", "web-1", "container", "app")
	}
	system := func(name string) labels.Labels {
		return labels.FromStrings("__name__", name, "id", "/system.slice/containerd.service")
	}
	for _, tc := range []struct {
		series labels.Labels
		keep   bool
	}{
		{inPod("container_cpu_usage_seconds_total"), true},
		{inPod("container_cpu_cfs_throttled_periods_total"), true},
		{inPod("container_memory_working_set_bytes"), true},
		{inPod("container_network_receive_bytes_total"), true},
		{inPod("container_fs_usage_bytes"), true},
		{inPod("container_spec_cpu_quota"), true},
		{inPod("container_start_time_seconds"), true},
		{system("container_cpu_usage_seconds_total"), true},
		{system("container_fs_writes_bytes_total"), true},
		{labels.FromStrings("__name__", "machine_cpu_cores", "machine_id", "x"), true},
		{inPod("container_tasks_state"), false},
		{inPod("container_cpu_load_average_10s"), false},
		{inPod("container_memory_failures_total"), false},
		{inPod("container_blkio_device_usage_total"), false},
		{inPod("container_network_tcp_usage_total"), false},
		{inPod("container_network_udp_usage_total"), false},
		{system("container_spec_memory_limit_bytes"), false},
		{system("container_threads"), false},
		{system("container_last_seen"), false},
		{system("container_start_time_seconds"), false},
	} {
		lb := labels.NewBuilder(tc.series)
		if got := relabel.ProcessBuilder(lb, rules...); got != tc.keep {
			t.Errorf("%v kept=%v, want %v", tc.series, got, tc.keep)
		}
	}
}

// TestCadvisorScrape runs the job as rendered through Prometheus' scrape loop
// into the TSDB, against a fake HTTPS kubelet serving testdata/cadvisor.txt
// (what the simulated v1.37 kubelet serves, kept current by test/sim's
// TestCadvisorFixture). Only discovery is replaced, by the target kubernetes
// SD makes of a node; relabeling, TLS, token, path and filter are the job's.
func TestCadvisorScrape(t *testing.T) {
	body, err := os.ReadFile("testdata/cadvisor.txt")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer test-token":
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
		case r.URL.Path != "/metrics/cadvisor":
			http.NotFound(w, r)
		default:
			w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
			_, _ = w.Write(body)
		}
	}))
	defer srv.Close()
	o := DefaultKubeletOptions()
	o.Port = srv.Listener.Addr().(*net.TCPAddr).Port
	o.ScrapeInterval, o.RequestTimeout = time.Second, time.Second
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	y, err := CadvisorJobYAML(o, Credentials{BearerToken: "test-token", CAData: ca}, CadvisorConfig{Enabled: true})
	if err != nil {
		t.Fatal(err)
	}
	store := scrapeStore(t, asDiscoveredNode(t, y, "node-a", "127.0.0.1"))
	instant := func(expr string) promql.Vector {
		t.Helper()
		v, err := store.Instant(context.Background(), expr, time.Now(), storage.QueryOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return v.(promql.Vector)
	}
	waitFor(t, "a successful scrape", func() bool {
		up := instant(`up{job="kubernetes-cadvisor"}`)
		return len(up) == 1 && up[0].F == 1
	})

	families := map[string]float64{}
	for _, s := range instant(`count by (__name__) ({job="kubernetes-cadvisor"})`) {
		families[s.Metric.Get("__name__")] = s.F
	}
	for _, f := range []string{
		"container_cpu_usage_seconds_total", "container_cpu_cfs_periods_total", "container_cpu_cfs_throttled_periods_total",
		"container_cpu_cfs_throttled_seconds_total", "container_memory_working_set_bytes", "container_memory_rss",
		"container_network_receive_bytes_total", "container_network_transmit_bytes_total",
		"container_network_receive_packets_dropped_total", "container_fs_usage_bytes", "container_fs_limit_bytes",
		"container_fs_reads_bytes_total", "container_fs_writes_bytes_total", "container_spec_cpu_quota",
		"container_spec_memory_limit_bytes",
		// Stamped with the kubelet's start, an hour before the rest: stored
		// only because the job does not honor timestamps.
		"machine_cpu_cores", "machine_memory_bytes",
	} {
		if families[f] == 0 {
			t.Errorf("%s not stored", f)
		}
	}
	for _, f := range []string{"container_memory_failures_total", "container_blkio_device_usage_total"} {
		if families[f] != 0 {
			t.Errorf("%s stored, want dropped", f)
		}
	}

	// The stored series of app's CPU: cAdvisor's labels, and the job's.
	cpu := instant(`container_cpu_usage_seconds_total{job="kubernetes-cadvisor",container="app"}`)
	if len(cpu) != 1 || cpu[0].F != 8.9775 {
		t.Fatalf("app cpu %v, want one series of 8.9775", cpu)
	}
	var names []string
	cpu[0].Metric.Range(func(l labels.Label) { names = append(names, l.Name) })
	if got, want := strings.Join(names, ","), "__name__,container,cpu,id,image,instance,job,name,namespace,node,pod"; got != want {
		t.Errorf("labels %s, want %s", got, want)
	}
	if cpu[0].Metric.Get(NodeLabel) != "node-a" || cpu[0].Metric.Get("instance") != net.JoinHostPort("127.0.0.1", strconv.Itoa(o.Port)) {
		t.Errorf("target labels %v", cpu[0].Metric)
	}

	// Series stored per cgroup: what enabling the job costs.
	for _, tc := range []struct {
		what, selector string
		want           float64
	}{
		{"container with a CPU limit", `container="app"`, cadvisorSeriesPerLimitedContainer},
		{"container without", `container="sidecar"`, cadvisorSeriesPerContainer},
		// Besides its containers, a pod has its cgroup and its sandbox.
		{"pod cgroup", `pod="web-1",container="",image=""`, 48},
		{"pod sandbox", `pod="web-1",image="registry.k8s.io/pause:3.10"`, 67},
		{"node cgroup", `id="/"`, 52},
		// With machine_*, cadvisor_version_info and the 5 report series.
		{"all", ``, 495},
	} {
		n := instant(`count({job="kubernetes-cadvisor",` + tc.selector + `})`)
		if len(n) != 1 || n[0].F != tc.want {
			t.Errorf("%s: %v series, want %g", tc.what, n, tc.want)
		}
	}
}

// Series a container stores with the cadvisor job, from testdata/cadvisor.txt;
// docs/resource-metrics.md quotes them.
const (
	cadvisorSeriesPerContainer        = 63
	cadvisorSeriesPerLimitedContainer = 69
)
