package scrape

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/config"
)

// loadAll loads a configuration file and every job it makes, with the
// kubelet job and the cadvisor job when enabled, as the server does.
func loadAll(t *testing.T, path string) (*GatewayConfig, map[string]*config.ScrapeConfig) {
	t.Helper()
	gc, errs := LoadConfigFile(path)
	if len(errs) > 0 {
		t.Fatalf("load %s: %v", path, errs)
	}
	docs, err := gc.ScrapeDocs(Credentials{Kubeconfig: "/kubeconfig"})
	if err != nil {
		t.Fatal(err)
	}
	kubelet, err := KubeletJobYAML(DefaultKubeletOptions(), Credentials{Kubeconfig: "/kubeconfig"})
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, kubelet)
	cad, err := CadvisorJobYAML(DefaultKubeletOptions(), Credentials{Kubeconfig: "/kubeconfig"}, gc.Cadvisor)
	if err != nil {
		t.Fatal(err)
	}
	if cad != "" {
		docs = append(docs, cad)
	}
	cfg, err := LoadConfig(nil, docs...)
	if err != nil {
		t.Fatalf("load jobs: %v\n%s", err, strings.Join(docs, "---\n"))
	}
	jobs := map[string]*config.ScrapeConfig{}
	for _, sc := range cfg.ScrapeConfigs {
		jobs[sc.JobName] = sc
	}
	return gc, jobs
}

func TestConfigDefaults(t *testing.T) {
	for _, path := range []string{"", "testdata/config/good_minimal.yaml"} {
		t.Run(path, func(t *testing.T) {
			gc, jobs := loadAll(t, path)
			if gc.Storage.MaxHeadSeries != DefaultMaxHeadSeries || gc.Limits != DefaultLimits() || gc.Pods.Limits != DefaultLimits() {
				t.Errorf("defaults: %+v", gc)
			}
			pods, ok := jobs[PodJobName]
			if !ok || len(jobs) != 2 {
				t.Fatalf("jobs %v, want the pod job (on by default) and the kubelet's; cadvisor is off by default", jobs)
			}
			if gc.Cadvisor != (CadvisorConfig{}) {
				t.Errorf("cadvisor defaults %+v, want all unset (the job follows the kubelet flags)", gc.Cadvisor)
			}
			if time.Duration(pods.ScrapeInterval) != DefaultPodScrapeInterval || time.Duration(pods.ScrapeTimeout) != DefaultPodScrapeTimeout {
				t.Errorf("pod job interval %v timeout %v", pods.ScrapeInterval, pods.ScrapeTimeout)
			}
			// The kubelet job is metrics-server's: no gateway limits.
			if jobs[KubeletJobName].SampleLimit != 0 {
				t.Errorf("kubelet sample limit %d", jobs[KubeletJobName].SampleLimit)
			}
		})
	}
}

// A short pod interval pulls the default timeout down with it.
func TestConfigDefaultTimeoutFollowsInterval(t *testing.T) {
	gc := &GatewayConfig{APIVersion: ConfigAPIVersion, Kind: ConfigKind}
	gc.Pods.ScrapeInterval = modelDuration(5 * time.Second)
	SetDefaults(gc)
	if time.Duration(gc.Pods.ScrapeTimeout) != 5*time.Second {
		t.Errorf("timeout %v", gc.Pods.ScrapeTimeout)
	}
	if errs := gc.Validate(); len(errs) > 0 {
		t.Error(errs)
	}
}

func TestConfigLimitsApplyToUserJobs(t *testing.T) {
	gc, jobs := loadAll(t, "testdata/config/good_full.yaml")
	if gc.Storage.MaxHeadSeries != 200000 {
		t.Errorf("maxHeadSeries %d", gc.Storage.MaxHeadSeries)
	}
	type limits struct {
		sample, label, name, value uint
		body                       int64
		timeout                    time.Duration
	}
	get := func(sc *config.ScrapeConfig) limits {
		return limits{sc.SampleLimit, sc.LabelLimit, sc.LabelNameLengthLimit, sc.LabelValueLengthLimit, int64(sc.BodySizeLimit), time.Duration(sc.ScrapeTimeout)}
	}
	for job, want := range map[string]limits{
		// Top-level limits, except where pods.limits overrides.
		PodJobName: {20000, 32, 128, 512, 5 << 20, 5 * time.Second},
		// Every limit from the top level.
		"node-exporter": {5000, 32, 128, 512, 5 << 20, 10 * time.Second},
		// A job's own settings win, even "no limit".
		"big-app": {0, 32, 128, 512, 50 << 20, 10 * time.Second},
	} {
		sc, ok := jobs[job]
		if !ok {
			t.Errorf("no job %s", job)
			continue
		}
		if got := get(sc); got != want {
			t.Errorf("%s: got %+v, want %+v", job, got, want)
		}
	}
	// Rendering must not change the configuration it renders.
	if _, set := gc.ScrapeConfigs[0]["sample_limit"]; set {
		t.Error("user job modified in place")
	}
}

func TestConfigPodsDisabled(t *testing.T) {
	_, jobs := loadAll(t, "testdata/config/good_pods_disabled.yaml")
	if _, ok := jobs[PodJobName]; ok {
		t.Error("pod job present though disabled")
	}
	if sc, ok := jobs["kube-state-metrics"]; !ok || sc.SampleLimit != 10000 {
		t.Errorf("kube-state-metrics job: %v", sc)
	}
}

func TestConfigCadvisor(t *testing.T) {
	for _, tc := range []struct {
		file              string
		builtIn           bool
		interval, timeout time.Duration
	}{
		// The timeout is the kubelet flag's 10s, under the file's interval.
		{"good_cadvisor.yaml", true, 30 * time.Second, 10 * time.Second},
		// Off: the user's job of that name is theirs, with Prometheus' defaults.
		{"good_cadvisor_off_user_job.yaml", false, time.Minute, 10 * time.Second},
	} {
		t.Run(tc.file, func(t *testing.T) {
			gc, jobs := loadAll(t, filepath.Join("testdata/config", tc.file))
			sc, ok := jobs[CadvisorJobName]
			if !ok {
				t.Fatalf("no %s job in %v", CadvisorJobName, jobs)
			}
			if gc.Cadvisor.Enabled != tc.builtIn || (len(sc.MetricRelabelConfigs) > 0) != tc.builtIn {
				t.Errorf("enabled %v, %d metric relabel rules: want the built-in job %v", gc.Cadvisor.Enabled, len(sc.MetricRelabelConfigs), tc.builtIn)
			}
			if time.Duration(sc.ScrapeInterval) != tc.interval || time.Duration(sc.ScrapeTimeout) != tc.timeout {
				t.Errorf("interval %v timeout %v, want %v %v", sc.ScrapeInterval, sc.ScrapeTimeout, tc.interval, tc.timeout)
			}
		})
	}
}

// TestConfigErrors is the expected-errors table: every bad fixture, and
// every error it must produce, with its field path.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
		// all: want is every error, one each; validation goes on.
		all bool
	}{
		{"bad_version.yaml", []string{`apiVersion: Unsupported value: "metrics-gateway.io/v1"`, `kind: Unsupported value: "Config"`}, false},
		{"bad_unknown_field.yaml", []string{`unknown field "sampleLimit"`}, false},
		{"bad_not_yaml.yaml", []string{"parse gateway config"}, false},
		{"bad_interval.yaml", []string{`pods.scrapeInterval: Invalid value: "500ms": must be at least 1s`}, false},
		{"bad_many.yaml", []string{
			`pods.scrapeTimeout: Invalid value: "20s": must not exceed scrapeInterval`,
			`pods.namespaces.include[1]: Invalid value: "Bad_Name"`,
			`pods.namespaces.exclude[0]: Invalid value: "shop": also in include`,
			`pods.limits.labelLimit: Invalid value: -1: must not be negative`,
			`limits.sampleLimit: Invalid value: -5: must not be negative`,
			`limits.bodySizeLimit: Invalid value: "lots"`,
			`scrapeConfigs[0].job_name: Invalid value: "kubelet": reserved for a built-in job`,
		}, true},
		{"bad_cadvisor_unknown_field.yaml", []string{`unknown field "interval"`}, false},
		{"bad_cadvisor_many.yaml", []string{
			`cadvisor.scrapeInterval: Invalid value: "500ms": must be at least 1s`,
			`cadvisor.scrapeTimeout: Invalid value: "2s": must not exceed scrapeInterval`,
			`scrapeConfigs[0].job_name: Invalid value: "kubernetes-cadvisor": reserved for a built-in job`,
		}, true},
		{"bad_prometheus_job.yaml", []string{`scrapeConfigs: Invalid value: "": load scrape configs: scrape timeout greater than scrape interval for scrape config with job name "app"`}, false},
		{"bad_prometheus_unknown_key.yaml", []string{"scrapeConfigs: Invalid value", "field sample_limt not found"}, false},
		{"bad_duplicate_job.yaml", []string{`found multiple scrape configs with job name "app"`}, false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata/config", tc.file)
			gc, errs := LoadConfigFile(path)
			if gc != nil || len(errs) == 0 {
				t.Fatal("loaded, want errors")
			}
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
				if !strings.HasPrefix(e.Error(), path+": ") {
					t.Errorf("error %q does not name the file", e)
				}
			}
			all := strings.Join(msgs, "\n")
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("missing %q in:\n%s", w, all)
				}
			}
			if tc.all && len(errs) != len(tc.want) {
				t.Errorf("%d errors, want %d:\n%s", len(errs), len(tc.want), all)
			}
		})
	}
}

func TestConfigMissingFile(t *testing.T) {
	if _, errs := LoadConfigFile(filepath.Join(t.TempDir(), "none.yaml")); len(errs) != 1 {
		t.Errorf("errors %v, want one", errs)
	}
}

// FuzzConfig feeds the loader arbitrary documents: it may refuse them but
// must never panic, and whatever it accepts must load through config.Load.
func FuzzConfig(f *testing.F) {
	entries, err := os.ReadDir("testdata/config")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata/config", e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		gc, err := ParseConfig(data)
		if err != nil {
			return
		}
		SetDefaults(gc)
		if errs := gc.Validate(); len(errs) > 0 {
			return
		}
		docs, err := gc.ScrapeDocs(Credentials{})
		if err != nil {
			t.Fatalf("valid config does not render: %v", err)
		}
		if _, err := LoadConfig(nil, docs...); err != nil {
			t.Fatalf("valid config does not load: %v\n%s", err, data)
		}
	})
}

func modelDuration(d time.Duration) model.Duration { return model.Duration(d) }
