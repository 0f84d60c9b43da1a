package scrape

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/prometheus/discovery/kubernetes"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
)

// podTarget is what kubernetes SD (role pod) sets for one container port of
// a pod; port "" is a container without ports.
type podTarget struct {
	ns, name, phase, ip string
	port, protocol      string
	init                bool
	annotations         map[string]string
}

func (p podTarget) labels() labels.Labels {
	if p.phase == "" {
		p.phase = "Running"
	}
	if p.ip == "" {
		p.ip = "10.0.0.7"
	}
	m := map[string]string{
		"__meta_kubernetes_namespace":               p.ns,
		"__meta_kubernetes_pod_name":                p.name,
		"__meta_kubernetes_pod_phase":               p.phase,
		"__meta_kubernetes_pod_ip":                  p.ip,
		"__meta_kubernetes_pod_container_name":      "app",
		"__meta_kubernetes_pod_container_init":      "false",
		"__meta_kubernetes_pod_label_app":           "web",
		"__meta_kubernetes_pod_annotationpresent_x": "true",
		"__address__": p.ip,
	}
	if p.init {
		m["__meta_kubernetes_pod_container_init"] = "true"
	}
	if p.port != "" {
		m["__meta_kubernetes_pod_container_port_number"] = p.port
		m["__meta_kubernetes_pod_container_port_protocol"] = "TCP"
		if p.protocol != "" {
			m["__meta_kubernetes_pod_container_port_protocol"] = p.protocol
		}
		if p.ip[0] != '[' && containsColon(p.ip) {
			m["__address__"] = "[" + p.ip + "]:" + p.port
		} else {
			m["__address__"] = p.ip + ":" + p.port
		}
	}
	for k, v := range p.annotations {
		m["__meta_kubernetes_pod_annotation_"+k] = v
	}
	// Prometheus adds these before relabeling.
	m["__scheme__"] = "http"
	m["__metrics_path__"] = "/metrics"
	m["job"] = PodJobName
	return labels.FromMap(m)
}

func containsColon(s string) bool {
	for _, c := range s {
		if c == ':' {
			return true
		}
	}
	return false
}

func TestPodRelabeling(t *testing.T) {
	on := map[string]string{"prometheus_io_scrape": "true"}
	with := func(kv ...string) map[string]string {
		m := map[string]string{"prometheus_io_scrape": "true"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	type want struct{ address, path, scheme string } // address "" means dropped
	for _, tc := range []struct {
		name   string
		opts   PodJobOptions
		target podTarget
		want   want
	}{
		{"annotated, declared port", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", port: "8080", annotations: on}, want{"10.0.0.7:8080", "/metrics", "http"}},
		{"not annotated", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", port: "8080"}, want{}},
		{"annotation false", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", port: "8080", annotations: map[string]string{"prometheus_io_scrape": "false"}}, want{}},
		{"port annotation wins", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", port: "8080", annotations: with("prometheus_io_port", "9102")}, want{"10.0.0.7:9102", "/metrics", "http"}},
		{"port annotation on container without ports", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", annotations: with("prometheus_io_port", "9102")}, want{"10.0.0.7:9102", "/metrics", "http"}},
		{"port annotation ipv6", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", ip: "fd00::7", port: "8080", annotations: with("prometheus_io_port", "9102")}, want{"[fd00::7]:9102", "/metrics", "http"}},
		{"no port anywhere", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", annotations: on}, want{}},
		{"udp port without annotation", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", port: "53", protocol: "UDP", annotations: on}, want{}},
		{"udp port with annotation", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", port: "53", protocol: "UDP", annotations: with("prometheus_io_port", "9102")}, want{"10.0.0.7:9102", "/metrics", "http"}},
		{"path", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", port: "8080", annotations: with("prometheus_io_path", "/stats/prometheus")}, want{"10.0.0.7:8080", "/stats/prometheus", "http"}},
		{"scheme https", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", port: "8443", annotations: with("prometheus_io_scheme", "https")}, want{"10.0.0.7:8443", "/metrics", "https"}},
		{"scheme unknown ignored", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", port: "8080", annotations: with("prometheus_io_scheme", "ftp")}, want{"10.0.0.7:8080", "/metrics", "http"}},
		{"pending", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", phase: "Pending", port: "8080", annotations: on}, want{}},
		{"succeeded", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", phase: "Succeeded", port: "8080", annotations: on}, want{}},
		{"init container", PodJobOptions{}, podTarget{ns: "shop", name: "web-1", port: "8080", init: true, annotations: with("prometheus_io_port", "9102")}, want{}},
		{"excluded namespace", PodJobOptions{Exclude: []string{"kube-system", "shop"}}, podTarget{ns: "shop", name: "web-1", port: "8080", annotations: on}, want{}},
		{"exclude is exact", PodJobOptions{Exclude: []string{"shop"}}, podTarget{ns: "shop-2", name: "web-1", port: "8080", annotations: on}, want{"10.0.0.7:8080", "/metrics", "http"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Interval, tc.opts.Timeout = 15*time.Second, 10*time.Second
			y, err := PodJobYAML(tc.opts, Credentials{Kubeconfig: "/kubeconfig", BearerToken: "secret"})
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := LoadConfig(nil, y)
			if err != nil {
				t.Fatalf("load: %v\n%s", err, y)
			}
			lb := labels.NewBuilder(tc.target.labels())
			keep := relabel.ProcessBuilder(lb, cfg.ScrapeConfigs[0].RelabelConfigs...)
			if tc.want.address == "" {
				if keep {
					t.Fatalf("kept %v, want dropped", lb.Labels())
				}
				return
			}
			if !keep {
				t.Fatal("dropped")
			}
			got := want{lb.Get("__address__"), lb.Get("__metrics_path__"), lb.Get("__scheme__")}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if lb.Get(NamespaceLabel) != tc.target.ns || lb.Get(PodLabel) != tc.target.name {
				t.Errorf("namespace %q pod %q", lb.Get(NamespaceLabel), lb.Get(PodLabel))
			}
		})
	}
}

// With a port annotation, every container port of a pod must end as the
// same target, which the scrape pool then keeps once.
func TestPodOneTargetPerPod(t *testing.T) {
	y, err := PodJobYAML(PodJobOptions{Interval: 15 * time.Second, Timeout: 10 * time.Second}, Credentials{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(nil, y)
	if err != nil {
		t.Fatal(err)
	}
	ann := map[string]string{"prometheus_io_scrape": "true", "prometheus_io_port": "9102"}
	seen := map[string]bool{}
	for _, port := range []string{"", "8080", "8081", "9102"} {
		lb := labels.NewBuilder(podTarget{ns: "shop", name: "web-1", port: port, annotations: ann}.labels())
		if !relabel.ProcessBuilder(lb, cfg.ScrapeConfigs[0].RelabelConfigs...) {
			t.Fatalf("port %q dropped", port)
		}
		final := labels.NewBuilder(lb.Labels())
		lb.Range(func(l labels.Label) {
			if len(l.Name) > 2 && l.Name[:2] == "__" && l.Name != "__address__" && l.Name != "__metrics_path__" && l.Name != "__scheme__" {
				final.Del(l.Name)
			}
		})
		seen[final.Labels().String()] = true
	}
	if len(seen) != 1 {
		t.Errorf("%d distinct targets, want 1: %v", len(seen), seen)
	}
}

func TestPodJobSettings(t *testing.T) {
	y, err := PodJobYAML(PodJobOptions{
		Interval: 30 * time.Second, Timeout: 1500 * time.Millisecond,
		Include: []string{"shop", "web"}, Limits: DefaultLimits(),
	}, Credentials{Kubeconfig: "/kubeconfig", BearerToken: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(nil, y)
	if err != nil {
		t.Fatal(err)
	}
	sc := cfg.ScrapeConfigs[0]
	if sc.JobName != PodJobName || time.Duration(sc.ScrapeInterval) != 30*time.Second || time.Duration(sc.ScrapeTimeout) != 1500*time.Millisecond {
		t.Errorf("job %q interval %v timeout %v", sc.JobName, sc.ScrapeInterval, sc.ScrapeTimeout)
	}
	// Pods are not trusted with the gateway's credentials.
	if sc.HTTPClientConfig.Authorization != nil || sc.HTTPClientConfig.BearerToken != "" {
		t.Errorf("pod scrapes carry credentials: %+v", sc.HTTPClientConfig)
	}
	if sc.SampleLimit != 10000 || sc.LabelLimit != 64 || sc.LabelNameLengthLimit != 256 || sc.LabelValueLengthLimit != 1024 || sc.BodySizeLimit != 10<<20 {
		t.Errorf("limits: sample %d label %d name %d value %d body %d", sc.SampleLimit, sc.LabelLimit, sc.LabelNameLengthLimit, sc.LabelValueLengthLimit, sc.BodySizeLimit)
	}
	if sc.HonorLabels {
		t.Error("honor_labels would let a pod claim another namespace")
	}
	if len(sc.ServiceDiscoveryConfigs) != 1 {
		t.Fatalf("%d SD configs", len(sc.ServiceDiscoveryConfigs))
	}
	sd := sc.ServiceDiscoveryConfigs[0].(*kubernetes.SDConfig)
	if sd.Role != kubernetes.RolePod || sd.KubeConfig != "/kubeconfig" || !slices.Equal(sd.NamespaceDiscovery.Names, []string{"shop", "web"}) {
		t.Errorf("discovery: role %v kubeconfig %q namespaces %v", sd.Role, sd.KubeConfig, sd.NamespaceDiscovery.Names)
	}
}
