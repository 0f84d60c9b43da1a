package scrape

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
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
	if !sc.HonorTimestamps || !sc.TrackTimestampsStaleness || sc.MetricsPath != "/metrics/resource" || sc.Scheme != "https" || sc.EnableCompression {
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
	m, err := NewManager(cfg, store.Appendable(), ManagerOptions{}, logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = m.Run(ctx) }()
	// Cleanups run last-in first-out: scraping stops before storage closes.
	t.Cleanup(func() { cancel(); m.Stop() })
	return store
}
