package scrape

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/prometheus/config"
)

func TestInlineFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, cert, key, token := write("ca.crt", "CA-1"), write("tls.crt", "CERT-1"), write("tls.key", "KEY-1"), write("token", "TOKEN-1\n")
	kubelet, err := KubeletJobYAML(DefaultKubeletOptions(), Credentials{Kubeconfig: "/kubeconfig", CAFile: ca, CertFile: cert, KeyFile: key, BearerTokenFile: token})
	if err != nil {
		t.Fatal(err)
	}
	// A user's job keeps its files: Prometheus reads them on every scrape.
	user := "scrape_configs:\n- job_name: user\n  static_configs: [{targets: ['127.0.0.1:1']}]\n  tls_config: {ca_file: " + ca + "}\n"
	cfg, err := LoadConfig(slog.New(slog.DiscardHandler), kubelet, user)
	if err != nil {
		t.Fatal(err)
	}
	inlined, refs, contents, err := inlineFiles(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(refs) != 4 || len(contents) != 4 {
		t.Fatalf("%d files read, want CA, certificate, key and token", len(refs))
	}
	job := func(c *config.Config, name string) *config.ScrapeConfig {
		for _, sc := range c.ScrapeConfigs {
			if sc.JobName == name {
				return sc
			}
		}
		t.Fatalf("no job %s", name)
		return nil
	}
	k := job(inlined, KubeletJobName).HTTPClientConfig
	if k.TLSConfig.CA != "CA-1" || k.TLSConfig.Cert != "CERT-1" || string(k.TLSConfig.Key) != "KEY-1" || string(k.Authorization.Credentials) != "TOKEN-1" {
		t.Errorf("inlined kubelet job: %+v, %+v", k.TLSConfig, k.Authorization)
	}
	if k.TLSConfig.CAFile != "" || k.TLSConfig.CertFile != "" || k.TLSConfig.KeyFile != "" || k.Authorization.CredentialsFile != "" {
		t.Errorf("inlined kubelet job still names files: %+v, %+v", k.TLSConfig, k.Authorization)
	}
	if err := k.Validate(); err != nil {
		t.Errorf("inlined kubelet job does not validate: %v", err)
	}
	if orig := job(cfg, KubeletJobName).HTTPClientConfig; orig.TLSConfig.CAFile != ca || orig.Authorization.CredentialsFile != token {
		t.Errorf("the loaded config was changed: %+v", orig)
	}
	if u := job(inlined, "user").HTTPClientConfig.TLSConfig; u.CAFile != ca || u.CA != "" {
		t.Errorf("user job inlined: %+v", u)
	}

	// A renewed token reaches the scrapes; an unchanged round applies nothing.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	applied := make(chan *config.Config, 4)
	go watchFiles(ctx, 20*time.Millisecond, inlined, refs, contents, func(c *config.Config) error { applied <- c; return nil }, slog.New(slog.DiscardHandler))
	select {
	case c := <-applied:
		t.Fatalf("applied with nothing changed: %+v", job(c, KubeletJobName).HTTPClientConfig.Authorization)
	case <-time.After(100 * time.Millisecond):
	}
	write("token", "TOKEN-2\n")
	select {
	case c := <-applied:
		if got := job(c, KubeletJobName).HTTPClientConfig; string(got.Authorization.Credentials) != "TOKEN-2" || got.TLSConfig.CA != "CA-1" {
			t.Errorf("after renewal: %+v %+v", got.Authorization, got.TLSConfig)
		}
		if string(job(inlined, KubeletJobName).HTTPClientConfig.Authorization.Credentials) != "TOKEN-1" {
			t.Error("the renewal changed the config in use before applying")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a renewed token was not applied")
	}
	// A file that cannot be read keeps the last contents.
	if err := os.Remove(ca); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-applied:
		t.Errorf("applied without the CA: %+v", job(c, KubeletJobName).HTTPClientConfig.TLSConfig)
	case <-time.After(100 * time.Millisecond):
	}
}
