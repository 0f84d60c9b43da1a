package scrape

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/config"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/relabel"
)

func writeGatewayConfig(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	doc := "apiVersion: " + ConfigAPIVersion + "\nkind: " + ConfigKind + "\n" + body
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// Every target of a sharded job is kept by exactly one of the replicas,
// each replica keeps a share, and the kubelet job is every replica's.
func TestShardingKeepsEachTargetOnce(t *testing.T) {
	path := writeGatewayConfig(t, `
scrapeConfigs:
- job_name: mine
  static_configs:
  - targets: ["10.0.0.1:8080"]
`)
	const shards, targets = 3, 600
	kept := map[string][]int{}
	perShard := make([]int, shards)
	_, unsharded := loadAll(t, path)
	for shard := range shards {
		_, jobs := loadAll(t, path)
		cfg := &config.Config{}
		for _, j := range jobs {
			cfg.ScrapeConfigs = append(cfg.ScrapeConfigs, j)
		}
		if err := (Sharding{Index: shard, Count: shards}).Apply(cfg); err != nil {
			t.Fatal(err)
		}
		for _, job := range []string{PodJobName, "mine"} {
			for i := range targets {
				addr := fmt.Sprintf("10.%d.%d.%d:8080", i/65536, i/256%256, i%256)
				ls := labels.FromStrings("__address__", addr, "__meta_kubernetes_pod_annotation_prometheus_io_scrape", "true",
					"__meta_kubernetes_pod_phase", "Running", "__meta_kubernetes_namespace", "ns", "__meta_kubernetes_pod_name", "p",
					"__meta_kubernetes_pod_container_port_number", "8080")
				if relabel.ProcessBuilder(labels.NewBuilder(ls), jobs[job].RelabelConfigs...) {
					kept[job+"/"+addr] = append(kept[job+"/"+addr], shard)
					perShard[shard]++
				}
			}
		}
		for _, job := range []string{KubeletJobName, CadvisorJobName, SelfJobName} {
			if jobs[job] != nil && len(jobs[job].RelabelConfigs) != len(unsharded[job].RelabelConfigs) {
				t.Errorf("shard %d: the %s job is sharded", shard, job)
			}
		}
	}
	if len(kept) != 2*targets {
		t.Fatalf("%d of %d targets kept by some shard", len(kept), 2*targets)
	}
	for k, s := range kept {
		if len(s) != 1 {
			t.Errorf("%s kept by shards %v", k, s)
		}
	}
	for shard, n := range perShard {
		if n < 2*targets/shards/2 {
			t.Errorf("shard %d keeps %d of %d targets: hashing does not spread them", shard, n, 2*targets)
		}
	}
	t.Logf("targets per shard: %v", perShard)
}

func TestShardOfPod(t *testing.T) {
	for name, want := range map[string]int{"metrics-gateway-0": 0, "metrics-gateway-12": 12} {
		if got, err := ShardOfPod(name); err != nil || got != want {
			t.Errorf("ShardOfPod(%q) = %d, %v; want %d", name, got, err, want)
		}
	}
	if _, err := ShardOfPod("metrics-gateway-7d9f8-abcde"); err == nil {
		t.Error("a Deployment pod's name has no ordinal")
	}
	if err := (Sharding{Index: 2, Count: 2}).Apply(&config.Config{}); err == nil {
		t.Error("shard 2 of 2 accepted")
	}
}

func TestRemoteWriteAndBackendConfig(t *testing.T) {
	path := writeGatewayConfig(t, `
externalLabels:
  cluster: eu-1
remoteWrite:
- url: http://receive:19291/api/v1/receive
  queue_config:
    max_shards: 4
queryBackend:
  url: https://query:10902
  authorization:
    credentials: secret
  tls_config:
    insecure_skip_verify: true
`)
	gc, errs := LoadConfigFile(path)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	rw, err := gc.RemoteWriteConfig("metrics-gateway-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(rw.RemoteWriteConfigs) != 1 || rw.RemoteWriteConfigs[0].QueueConfig.MaxShards != 4 || rw.RemoteWriteConfigs[0].URL.Host != "receive:19291" {
		t.Errorf("remote write %+v", rw.RemoteWriteConfigs)
	}
	// Prometheus' defaults fill the rest of the queue.
	if rw.RemoteWriteConfigs[0].QueueConfig.Capacity != config.DefaultQueueConfig.Capacity {
		t.Errorf("queue capacity %d, want Prometheus' default", rw.RemoteWriteConfigs[0].QueueConfig.Capacity)
	}
	if got := rw.GlobalConfig.ExternalLabels; got.Get("cluster") != "eu-1" || got.Get(ReplicaLabel) != "metrics-gateway-1" {
		t.Errorf("external labels %v", got)
	}
	b, err := gc.Backend()
	if err != nil {
		t.Fatal(err)
	}
	if b.URL.String() != "https://query:10902" || string(b.HTTPClientConfig.Authorization.Credentials) != "secret" || !b.HTTPClientConfig.TLSConfig.InsecureSkipVerify {
		t.Errorf("backend %+v", b)
	}

	for body, want := range map[string]string{
		"remoteWrite:\n- name: no-url\n":               "remoteWrite",
		"remoteWrite:\n- url: http://x\n  bogus: 1\n":  "remoteWrite",
		"queryBackend:\n  url: ''\n":                   "queryBackend",
		"queryBackend:\n  url: http://q\n  bogus: 1\n": "queryBackend",
		"externalLabels:\n  gateway_replica: x\n":      "externalLabels[gateway_replica]",
		"queryBackend:\n  url: unix:///x\n":            "queryBackend",
	} {
		_, errs := LoadConfigFile(writeGatewayConfig(t, body))
		if len(errs) == 0 || !strings.Contains(fmt.Sprint(errs), want) {
			t.Errorf("%q: errors %v, want one at %s", body, errs, want)
		}
	}
	gc, errs = LoadConfigFile("")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if rw, err := gc.RemoteWriteConfig("x"); rw != nil || err != nil {
		t.Errorf("default remote write %v %v, want none", rw, err)
	}
	if b, err := gc.Backend(); b != nil || err != nil {
		t.Errorf("default backend %v %v, want none", b, err)
	}
}
