package scrape

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	config_util "github.com/prometheus/common/config"
	"github.com/prometheus/prometheus/config"
)

// fileReloadInterval is how often inlined files are read again. A service
// account token is renewed at four fifths of its life (an hour or more),
// serving and client certificates days before they expire: a minute is
// well inside both.
const fileReloadInterval = time.Minute

// inlinedJobs are the built-in jobs whose TLS and credential files are
// read once and given to Prometheus inline. Prometheus reads a job's CA,
// certificate, key and bearer-token files on every scrape to notice
// rotation: 3,000 file reads every round at 1,000 kubelets, 7% of the
// gateway's CPU in a profile at 1000x30. metrics-server reads them when it
// starts. Users' jobs keep Prometheus' behaviour.
var inlinedJobs = []string{KubeletJobName, CadvisorJobName}

// fileRef is one file a scrape config names, and how to put its content in
// the config's place.
type fileRef struct {
	job, path string
	set       func(sc *config.ScrapeConfig, content string)
}

// inlineFiles returns a copy of cfg whose built-in kubelet jobs carry the
// contents of their TLS and credential files instead of the paths, the
// files it read and their contents. cfg is not modified.
func inlineFiles(cfg *config.Config) (*config.Config, []fileRef, []string, error) {
	var refs []fileRef
	for _, sc := range cfg.ScrapeConfigs {
		if !slices.Contains(inlinedJobs, sc.JobName) {
			continue
		}
		h := &sc.HTTPClientConfig
		tls := &h.TLSConfig
		if tls.CAFile != "" {
			refs = append(refs, fileRef{sc.JobName, tls.CAFile, func(sc *config.ScrapeConfig, s string) {
				sc.HTTPClientConfig.TLSConfig.CA, sc.HTTPClientConfig.TLSConfig.CAFile = s, ""
			}})
		}
		if tls.CertFile != "" && tls.KeyFile != "" {
			refs = append(refs, fileRef{sc.JobName, tls.CertFile, func(sc *config.ScrapeConfig, s string) {
				sc.HTTPClientConfig.TLSConfig.Cert, sc.HTTPClientConfig.TLSConfig.CertFile = s, ""
			}}, fileRef{sc.JobName, tls.KeyFile, func(sc *config.ScrapeConfig, s string) {
				sc.HTTPClientConfig.TLSConfig.Key, sc.HTTPClientConfig.TLSConfig.KeyFile = config_util.Secret(s), ""
			}})
		}
		if a := h.Authorization; a != nil && a.CredentialsFile != "" {
			refs = append(refs, fileRef{sc.JobName, a.CredentialsFile, func(sc *config.ScrapeConfig, s string) {
				sc.HTTPClientConfig.Authorization.Credentials = config_util.Secret(strings.TrimSpace(s))
				sc.HTTPClientConfig.Authorization.CredentialsFile = ""
			}})
		}
	}
	contents, err := readFiles(refs)
	if err != nil {
		return nil, nil, nil, err
	}
	return withContents(cfg, refs, contents), refs, contents, nil
}

func readFiles(refs []fileRef) ([]string, error) {
	contents := make([]string, len(refs))
	for i, r := range refs {
		b, err := os.ReadFile(r.path)
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", r.job, err)
		}
		contents[i] = string(b)
	}
	return contents, nil
}

// withContents returns a copy of cfg with contents put in the places refs
// name. The scrape configs of the jobs refs name are copied (with their
// Authorization), the rest shared; cfg is not modified.
func withContents(cfg *config.Config, refs []fileRef, contents []string) *config.Config {
	out := *cfg
	out.ScrapeConfigs = slices.Clone(cfg.ScrapeConfigs)
	for i, sc := range out.ScrapeConfigs {
		if !slices.ContainsFunc(refs, func(r fileRef) bool { return r.job == sc.JobName }) {
			continue
		}
		c := *sc
		if a := c.HTTPClientConfig.Authorization; a != nil {
			auth := *a
			c.HTTPClientConfig.Authorization = &auth
		}
		out.ScrapeConfigs[i] = &c
	}
	for i, r := range refs {
		for _, sc := range out.ScrapeConfigs {
			if sc.JobName == r.job {
				r.set(sc, contents[i])
			}
		}
	}
	return &out
}

// watchFiles reads the inlined files every interval and, when one changed
// and read the same on the next tick too, hands a config with the new
// contents to applyConfig. Waiting for a second, equal read keeps a file
// caught halfway through being rewritten (truncated, not yet written) out
// of the scrapes. A file that cannot be read keeps the last contents, and
// is logged.
func watchFiles(ctx context.Context, interval time.Duration, cfg *config.Config, refs []fileRef, last []string, applyConfig func(*config.Config) error, logger *slog.Logger) {
	if len(refs) == 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	var pending []string
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		contents, err := readFiles(refs)
		if err != nil {
			logger.Error("Reading a kubelet job's TLS or credential file; keeping its last contents", "err", err)
			continue
		}
		if slices.Equal(contents, last) {
			pending = nil
			continue
		}
		if !slices.Equal(contents, pending) {
			pending = contents
			continue
		}
		next := withContents(cfg, refs, contents)
		if err := applyConfig(next); err != nil {
			logger.Error("Applying a kubelet job's renewed TLS or credential file", "err", err)
			continue
		}
		logger.Info("A kubelet job's TLS or credential file changed; its scrapes use the new contents")
		last, pending = contents, nil
	}
}
