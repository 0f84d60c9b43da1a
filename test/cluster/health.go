package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// pollInterval is short because every start-up step waits on one of these checks and
// the whole control plane is meant to come up in seconds.
const pollInterval = 200 * time.Millisecond

// httpClient builds a client that trusts the cluster CA and, when leaf is set, presents
// that client certificate. Health checks verify TLS like any other client would, so a
// wrong SAN in a generated certificate fails start-up instead of a later test.
func httpClient(l layout, leaf string) (*http.Client, error) {
	caPEM, err := os.ReadFile(l.pki(caName + ".crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("no certificate in ca.crt")
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if leaf != "" {
		pair, err := tls.LoadX509KeyPair(l.pki(leaf+".crt"), l.pki(leaf+".key"))
		if err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: true},
	}, nil
}

// probe GETs url and wants a 200 whose body contains want.
func probe(ctx context.Context, client *http.Client, url, want string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
		return fmt.Errorf("%s: %d %s", url, resp.StatusCode, strings.TrimSpace(lastLines(string(body), 8)))
	}
	return nil
}

// waitReady polls check until it succeeds, the process dies, ctx ends or timeout passes.
// The error carries the last check failure and, if the process died, how it ended:
// together with LogTails that is usually the whole diagnosis.
func waitReady(ctx context.Context, p *Process, timeout time.Duration, check func(context.Context) error) error {
	return Poll(ctx, pollInterval, timeout, p.name+" ready", func() error {
		if gone, how := p.exited(); gone {
			return StopPoll{fmt.Errorf("%s exited during start-up (%v); see %s", p.name, how, p.logPath)}
		}
		checkCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		return check(checkCtx)
	})
}

// lastLines returns at most n trailing lines of s.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
