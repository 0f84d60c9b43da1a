package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/metrics-gateway/metrics-gateway/pkg/query"
)

// DefaultRequestTimeout is the gateway's --request-timeout (the
// apiserver's default is 60s). It bounds every request on the secure port,
// the longest being a query API evaluation (--query-timeout, 30s, after a
// slot wait of up to 10s), and so how long shutdown drains it; the loopback
// listeners drain beside it for as long. Draining, then closing the TSDB,
// fits the Deployment's 60s terminationGracePeriodSeconds.
const DefaultRequestTimeout = 45 * time.Second

// loopbackServer is a plain-HTTP listener bound at construction, so a bad
// address fails the start, not a goroutine later.
type loopbackServer struct {
	ln   net.Listener
	srv  *http.Server
	once sync.Once
	err  error
}

// newLoopbackServer listens on addr, which must resolve to a loopback
// address: the listener has no TLS and, for the query API, no
// authentication.
func newLoopbackServer(addr string, h http.Handler) (*loopbackServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if tcp, ok := ln.Addr().(*net.TCPAddr); !ok || !tcp.IP.IsLoopback() {
		_ = ln.Close()
		return nil, fmt.Errorf("%s listens on %s, not a loopback address", addr, ln.Addr())
	}
	return &loopbackServer{ln: ln, srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}, nil
}

func (l *loopbackServer) addr() string { return l.ln.Addr().String() }

func (l *loopbackServer) start() {
	go func() {
		if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Loopback listener stopped", "address", l.addr())
		}
	}()
}

// shutdown stops accepting and waits up to timeout for running requests.
func (l *loopbackServer) shutdown(timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	l.once.Do(func() {
		if err := l.srv.Shutdown(ctx); err != nil {
			l.err = errors.Join(err, l.srv.Close())
		}
		if cerr := l.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			l.err = errors.Join(l.err, cerr)
		}
	})
	return l.err
}

// close stops the listener at once; safe before start and more than once.
func (l *loopbackServer) close() error { return l.shutdown(0) }

// newSelfToken is the bearer token of the self-scrape: only the gateway's
// own scrape job knows it, so other processes that reach the pod's
// loopback (a sidecar, a host-network neighbour) read nothing there.
func newSelfToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("self-scrape token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// selfMetricsHandler serves h at /metrics to requests bearing token.
func selfMetricsHandler(token string, h http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackHostOnly refuses requests whose Host is not a loopback address
// or localhost: a web page the port-forwarding user visits could otherwise
// point a name at 127.0.0.1 (DNS rebinding) and read the unauthenticated
// API through the user's browser.
func loopbackHostOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			query.WriteError(w, http.StatusForbidden, "forbidden", "the plain-HTTP listener answers only requests addressed to localhost or a loopback IP")
			return
		}
		h.ServeHTTP(w, r)
	})
}
