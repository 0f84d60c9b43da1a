package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

type pflagFlag = pflag.Flag

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Options)
		want []string
	}{
		{"defaults", func(*Options) {}, nil},
		{"metrics-server manifest args", func(o *Options) {
			named := o.Flags()
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			for _, n := range named.Order {
				fs.AddFlagSet(named.FlagSet(n))
			}
			if err := fs.Parse([]string{"--cert-dir=/tmp", "--secure-port=10250", "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname", "--kubelet-use-node-status-port", "--metric-resolution=15s", "--kubelet-insecure-tls"}); err != nil {
				t.Fatal(err)
			}
		}, nil},
		{"every problem at once", func(o *Options) {
			o.StoragePath = ""
			o.StorageRetention = time.Minute
			o.QueryTimeout = 0
			o.Kubelet.Resolution = 0
			o.SecureServing.BindPort = -1
		}, []string{"metric-resolution", "kubelet-request-timeout", "storage-path", "storage-retention", "query-timeout", "--secure-port"}},
		{"config files", func(o *Options) {
			o.ConfigFile = "../scrape/testdata/config/good_full.yaml"
			o.AdapterConfig = "../rules/testdata/adapter-default.yaml"
		}, nil},
		{"bad config files", func(o *Options) {
			o.ConfigFile = "../scrape/testdata/config/bad_interval.yaml"
			o.AdapterConfig = "../rules/testdata/bad-regex.yaml"
		}, []string{"scrapeInterval", "adapter-config ../rules/testdata/bad-regex.yaml"}},
		{"query API limits", func(o *Options) {
			o.QueryMaxSamples = 0
			o.QueryAPI.MaxConcurrent = 0
		}, []string{"query-max-samples", "query-api-max-concurrency"}},
		{"insecure query listener on loopback", func(o *Options) { o.QueryAPI.InsecureBindAddress = "127.0.0.1:9090" }, nil},
		{"insecure query listener on localhost", func(o *Options) { o.QueryAPI.InsecureBindAddress = "localhost:9090" }, nil},
		{"insecure query listener on ::1", func(o *Options) { o.QueryAPI.InsecureBindAddress = "[::1]:9090" }, nil},
		{"insecure query listener on every address", func(o *Options) { o.QueryAPI.InsecureBindAddress = ":9090" }, []string{`query-api-insecure-bind-address: ":9090" is not a loopback address`}},
		{"insecure query listener on a pod address", func(o *Options) { o.QueryAPI.InsecureBindAddress = "10.1.2.3:9090" }, []string{`"10.1.2.3:9090" is not a loopback address`}},
		{"insecure query listener without port", func(o *Options) { o.QueryAPI.InsecureBindAddress = "127.0.0.1" }, []string{"query-api-insecure-bind-address: address 127.0.0.1: missing port"}},
		{"serving certificate times", func(o *Options) {
			o.ServingCert.Validity = time.Second
			o.ServingCert.RenewBefore = time.Hour
		}, []string{"serving-cert-validity must be at least 1m", "serving-cert-renew-before must be between 0 and serving-cert-validity"}},
		{"serving certificate off: its options unchecked", func(o *Options) {
			o.ServingCert.Manage = false
			o.ServingCert.Validity = 0
		}, nil},
		{"missing adapter config", func(o *Options) { o.AdapterConfig = "testdata/none.yaml" }, []string{"adapter-config: open testdata/none.yaml"}},
		{"pod bytes in flight below the pod body size limit", func(o *Options) { o.PodScrapeMaxBytesInFlight = "1MiB" }, []string{"pod-scrape-max-bytes-in-flight 1MiB is below pods.limits.bodySizeLimit 10MB"}},
		{"pod bytes in flight not a size", func(o *Options) { o.PodScrapeMaxBytesInFlight = "ten" }, []string{`pod-scrape-max-bytes-in-flight "ten"`}},
		{"pod bytes in flight unbounded", func(o *Options) { o.PodScrapeMaxBytesInFlight = "0" }, nil},
		{"zstd WAL compression", func(o *Options) { o.StorageWALCompression = "zstd" }, nil},
		{"unknown WAL compression", func(o *Options) { o.StorageWALCompression = "gzip" }, []string{`storage-wal-compression: WAL compression "gzip": want one of none, snappy, zstd`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := NewOptions()
			tc.mod(o)
			errs := o.Validate()
			var msgs []string
			for _, e := range errs {
				msgs = append(msgs, e.Error())
			}
			all := strings.Join(msgs, "\n")
			if len(tc.want) == 0 && len(errs) > 0 {
				t.Fatalf("unexpected errors:\n%s", all)
			}
			for _, w := range tc.want {
				if !strings.Contains(all, w) {
					t.Errorf("errors lack %q:\n%s", w, all)
				}
			}
		})
	}
}

func TestFlagNamesMatchMetricsServer(t *testing.T) {
	// Args from metrics-server's own manifests and docs keep working.
	names := map[string]bool{}
	for _, fs := range NewOptions().Flags().FlagSets {
		fs.VisitAll(func(f *pflagFlag) { names[f.Name] = true })
	}
	for _, n := range []string{
		"cert-dir", "secure-port", "kubelet-preferred-address-types", "kubelet-use-node-status-port", "metric-resolution",
		"kubelet-insecure-tls", "kubelet-port", "kubelet-certificate-authority", "kubelet-client-certificate", "kubelet-client-key",
		"kubelet-request-timeout", "node-selector", "kubeconfig", "tls-cert-file", "tls-private-key-file", "requestheader-client-ca-file",
		"authentication-kubeconfig", "authorization-kubeconfig", "authorization-always-allow-paths", "v",
	} {
		if !names[n] {
			t.Errorf("flag --%s missing", n)
		}
	}
}

// TestConfigFilesReadOnce: Config uses the files as Validate read and
// checked them; it does not read them again (here they are gone by then).
func TestConfigFilesReadOnce(t *testing.T) {
	dir := t.TempDir()
	o := NewOptions()
	o.StoragePath = dir
	for src, dst := range map[string]*string{
		"../scrape/testdata/config/good_full.yaml": &o.ConfigFile,
		"../rules/testdata/adapter-default.yaml":   &o.AdapterConfig,
	} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		*dst = filepath.Join(dir, filepath.Base(src))
		if err := os.WriteFile(*dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if errs := o.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
	_ = os.Remove(o.ConfigFile)
	_ = os.Remove(o.AdapterConfig)
	files, err := o.configFiles()
	if err != nil || files.gateway == nil || files.adapter == nil || len(files.adapter.Rules) == 0 {
		t.Fatalf("files %+v, %v", files, err)
	}
	// Without a passing Validate the files are read now: gone, an error.
	o.files = nil
	if _, err := o.configFiles(); err == nil {
		t.Error("configFiles read nothing and reported nothing")
	}
}
