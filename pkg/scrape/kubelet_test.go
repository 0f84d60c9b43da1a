package scrape

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
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
			y, err := KubeletJobYAML(o, Credentials{Kubeconfig: "/kubeconfig", BearerToken: "t"})
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
					t.Fatalf("kept %v, want dropped", lb.Labels())
				}
				return
			}
			if !keep {
				t.Fatal("dropped")
			}
			if got := lb.Get("__address__"); got != tc.want {
				t.Errorf("address %q, want %q", got, tc.want)
			}
			if got := lb.Get(NodeLabel); got != "node-a" {
				t.Errorf("node label %q", got)
			}
		})
	}
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
			y, err := KubeletJobYAML(o, tc.creds)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := LoadConfig(nil, y); err != nil {
				t.Fatalf("load: %v", err)
			}
			tc.check(t, y)
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
