package scrape

import (
	"context"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
	"github.com/prometheus/prometheus/promql"
	"sigs.k8s.io/yaml"

	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

// discovered is what kubernetes SD (role node) sets for a node with the
// given addresses and kubelet port.
func discovered(name string, port string, addrs map[string]string) labels.Labels {
	b := labels.NewScratchBuilder(0)
	first := ""
	for _, t := range []string{"InternalIP", "InternalDNS", "ExternalIP", "ExternalDNS", "Hostname"} {
		if a, ok := addrs[t]; ok {
			b.Add("__meta_kubernetes_node_address_"+t, a)
			if first == "" {
				first = a
			}
		}
	}
	if strings.Contains(first, ":") {
		first = "[" + first + "]"
	}
	b.Add("__address__", first+":"+port)
	b.Add("__meta_kubernetes_node_name", name)
	b.Add("instance", name)
	b.Sort()
	return b.Labels()
}

func TestKubeletAddressSelection(t *testing.T) {
	addrs := map[string]string{"InternalIP": "127.0.0.2", "ExternalIP": "127.0.0.3", "Hostname": "node-a"}
	for _, tc := range []struct {
		name  string
		opts  func(*KubeletOptions)
		addrs map[string]string
		want  string // "" means dropped
	}{
		{"default order", func(*KubeletOptions) {}, addrs, "127.0.0.2:10250"},
		{"hostname first", func(o *KubeletOptions) { o.PreferredAddressTypes = []string{"Hostname", "InternalIP"} }, addrs, "node-a:10250"},
		{"fallback to later type", func(o *KubeletOptions) { o.PreferredAddressTypes = []string{"InternalDNS", "ExternalIP"} }, addrs, "127.0.0.3:10250"},
		{"fixed port", func(o *KubeletOptions) { o.Port = 11250 }, addrs, "127.0.0.2:11250"},
		{"node status port", func(o *KubeletOptions) { o.UseNodeStatusPort = true }, addrs, "127.0.0.2:34567"},
		{"ipv6", func(*KubeletOptions) {}, map[string]string{"InternalIP": "::1"}, "[::1]:10250"},
		{"ipv6 status port", func(o *KubeletOptions) { o.UseNodeStatusPort = true }, map[string]string{"InternalIP": "::1"}, "[::1]:34567"},
		{"no preferred address", func(o *KubeletOptions) { o.PreferredAddressTypes = []string{"ExternalDNS"} }, addrs, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultKubeletOptions()
			tc.opts(&o)
			if errs := o.Validate(); len(errs) > 0 {
				t.Fatal(errs)
			}
			for _, job := range kubeletJobs {
				y, err := job.render(o, Credentials{Kubeconfig: "/kubeconfig", BearerToken: "t"})
				if err != nil {
					t.Fatal(err)
				}
				cfg, err := LoadConfig(nil, y)
				if err != nil {
					t.Fatalf("load: %v\n%s", err, y)
				}
				sc := cfg.ScrapeConfigs[0]
				lb := labels.NewBuilder(discovered("node-a", "34567", tc.addrs))
				keep := relabel.ProcessBuilder(lb, sc.RelabelConfigs...)
				if tc.want == "" {
					if keep {
						t.Errorf("%s: kept %v, want dropped", job.name, lb.Labels())
					}
					continue
				}
				if !keep {
					t.Fatalf("%s: dropped", job.name)
				}
				if got := lb.Get("__address__"); got != tc.want {
					t.Errorf("%s: address %q, want %q", job.name, got, tc.want)
				}
				if got := lb.Get(NodeLabel); got != "node-a" {
					t.Errorf("%s: node label %q", job.name, got)
				}
			}
		})
	}
}

// kubeletJobs are the jobs that scrape kubelets: they must find, address,
// label and authenticate to kubelets alike.
var kubeletJobs = []struct {
	name   string
	render func(KubeletOptions, Credentials) (string, error)
}{
	{KubeletJobName, KubeletJobYAML},
	{CadvisorJobName, func(o KubeletOptions, c Credentials) (string, error) {
		return CadvisorJobYAML(o, c, CadvisorConfig{Enabled: true})
	}},
}

func TestKubeletMetricFilter(t *testing.T) {
	y, _ := KubeletJobYAML(DefaultKubeletOptions(), Credentials{})
	cfg, err := LoadConfig(nil, y)
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.ScrapeConfigs[0]
	if !sc.HonorTimestamps || !sc.TrackTimestampsStaleness || sc.MetricsPath != "/metrics/resource" || sc.Scheme != "https" {
		t.Errorf("job settings: %+v", sc)
	}
	if time.Duration(sc.ScrapeInterval) != 15*time.Second || time.Duration(sc.ScrapeTimeout) != 10*time.Second {
		t.Errorf("interval %v timeout %v", sc.ScrapeInterval, sc.ScrapeTimeout)
	}
	// In-cluster: the service-account token file.
	if sc.HTTPClientConfig.Authorization == nil || sc.HTTPClientConfig.Authorization.CredentialsFile != "/var/run/secrets/kubernetes.io/serviceaccount/token" {
		t.Errorf("in-cluster auth: %+v", sc.HTTPClientConfig.Authorization)
	}
	for name, keep := range map[string]bool{
		ContainerCPUMetric: true, ContainerMemoryMetric: true, ContainerStartTimeMetric: true, NodeCPUMetric: true, NodeMemoryMetric: true,
		"pod_cpu_usage_seconds_total": false, "container_swap_usage_bytes": false, "resource_scrape_error": false, "container_cpu_usage_seconds_total_x": false,
	} {
		lb := labels.NewBuilder(labels.FromStrings("__name__", name))
		if got := relabel.ProcessBuilder(lb, sc.MetricRelabelConfigs...); got != keep {
			t.Errorf("%s kept=%v, want %v", name, got, keep)
		}
	}
}

func TestKubeletCredentials(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  func(*KubeletOptions)
		creds Credentials
		check func(t *testing.T, y string)
	}{
		{"insecure wins over cluster CA", func(o *KubeletOptions) { o.InsecureTLS = true }, Credentials{CAData: []byte("PEM")}, func(t *testing.T, y string) {
			if !strings.Contains(y, "insecure_skip_verify: true") || strings.Contains(y, "PEM") {
				t.Error(y)
			}
		}},
		{"kubelet CA flag wins over cluster CA", func(o *KubeletOptions) { o.CAFile = "/kubelet-ca.pem" }, Credentials{CAFile: "/cluster-ca.pem"}, func(t *testing.T, y string) {
			if !strings.Contains(y, "ca_file: /kubelet-ca.pem") {
				t.Error(y)
			}
		}},
		{"client cert flags", func(o *KubeletOptions) { o.ClientCertFile, o.ClientKeyFile = "/c.pem", "/k.pem" }, Credentials{Kubeconfig: "/kc"}, func(t *testing.T, y string) {
			if !strings.Contains(y, "cert_file: /c.pem") || !strings.Contains(y, "key_file: /k.pem") || strings.Contains(y, "authorization") {
				t.Error(y)
			}
		}},
		{"token file", func(*KubeletOptions) {}, Credentials{BearerTokenFile: "/tok"}, func(t *testing.T, y string) {
			if !strings.Contains(y, "credentials_file: /tok") {
				t.Error(y)
			}
		}},
		{"node selector", func(o *KubeletOptions) { o.NodeSelector = "role=worker" }, Credentials{}, func(t *testing.T, y string) {
			if !strings.Contains(y, "label: role=worker") {
				t.Error(y)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultKubeletOptions()
			tc.opts(&o)
			for _, job := range kubeletJobs {
				y, err := job.render(o, tc.creds)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := LoadConfig(nil, y); err != nil {
					t.Fatalf("%s: load: %v", job.name, err)
				}
				tc.check(t, y)
			}
		})
	}
}

func TestKubeletOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*KubeletOptions)
		want []string
	}{
		{"defaults", func(*KubeletOptions) {}, nil},
		{"everything wrong", func(o *KubeletOptions) {
			o.Resolution = 0
			o.RequestTimeout = 0
			o.PreferredAddressTypes = []string{"Bogus"}
			o.Port = 70000
			o.NodeSelector = "a in ("
			o.InsecureTLS, o.CAFile = true, "/ca"
			o.ClientCertFile = "/c"
		}, []string{"metric-resolution", "kubelet-request-timeout must be positive", `unknown address type "Bogus"`, "kubelet-port 70000", "node-selector", "--kubelet-certificate-authority and --kubelet-insecure-tls", "need both"}},
		{"timeout above resolution", func(o *KubeletOptions) { o.RequestTimeout = time.Minute }, []string{"must not exceed metric-resolution"}},
		{"no address types", func(o *KubeletOptions) { o.PreferredAddressTypes = nil }, []string{"kubelet-preferred-address-types is empty"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultKubeletOptions()
			tc.mod(&o)
			errs := o.Validate()
			if len(errs) != len(tc.want) {
				t.Fatalf("got %d errors %v, want %d", len(errs), errs, len(tc.want))
			}
			for i, w := range tc.want {
				if !strings.Contains(errs[i].Error(), w) {
					t.Errorf("error %d = %q, want it to contain %q", i, errs[i], w)
				}
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	job := func(name string) string {
		return "scrape_configs:\n- job_name: " + name + "\n  static_configs: [{targets: ['127.0.0.1:9']}]\n"
	}
	for _, tc := range []struct {
		name, want string
		docs       []string
	}{
		{"merges documents", "", []string{job("a"), job("b")}},
		{"duplicate job", "multiple scrape configs with job name", []string{job("a"), job("a")}},
		{"unknown key", `unsupported key "rule_files"`, []string{"rule_files: []\n"}},
		{"not yaml", "scrape config document 0", []string{"scrape_configs: [\n"}},
		{"bad job", "load scrape configs", []string{"scrape_configs:\n- job_name: x\n  scrape_interval: banana\n"}},
		{"unknown field in job", "load scrape configs", []string{"scrape_configs:\n- job_name: x\n  no_such_field: 1\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := LoadConfig(nil, tc.docs...)
			if tc.want == "" {
				if err != nil || len(cfg.ScrapeConfigs) != len(tc.docs) {
					t.Fatalf("%v %v", err, cfg)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err %v, want %q", err, tc.want)
			}
		})
	}
}

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

// asDiscoveredNode replaces a kubelet job's discovery by the target
// kubernetes SD makes of a node with one InternalIP, listening on another
// port than the job's, so that relabeling must pick the address.
func asDiscoveredNode(t *testing.T, doc, node, ip string) string {
	t.Helper()
	var d map[string][]map[string]any
	if err := yaml.Unmarshal([]byte(doc), &d); err != nil {
		t.Fatal(err)
	}
	job := d["scrape_configs"][0]
	delete(job, "kubernetes_sd_configs")
	job["static_configs"] = []any{map[string]any{
		"targets": []string{net.JoinHostPort(ip, "1")},
		"labels":  map[string]string{"__meta_kubernetes_node_name": node, "__meta_kubernetes_node_address_InternalIP": ip},
	}}
	b, err := yaml.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// scrapeStore runs the jobs of docs through Prometheus' scrape manager into
// a real TSDB until the test ends.
func scrapeStore(t *testing.T, docs ...string) *storage.Storage {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	store, err := storage.Open(storage.Options{Path: t.TempDir()}, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	cfg, err := LoadConfig(logger, docs...)
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewManager(cfg, store.Appendable(), logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = m.Run(ctx) }()
	// Cleanups run last-in first-out: scraping stops before storage closes.
	t.Cleanup(func() { cancel(); m.Stop() })
	return store
}
