package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestSelfMetricsHandler(t *testing.T) {
	h := selfMetricsHandler("tok", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("m 1\n")) }))
	for _, tc := range []struct {
		path, auth string
		code       int
	}{
		{"/metrics", "Bearer tok", http.StatusOK},
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", "Bearer other", http.StatusUnauthorized},
		{"/metrics", "tok", http.StatusUnauthorized},
		{"/api/v1/query", "Bearer tok", http.StatusNotFound},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.path, nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.code {
			t.Errorf("%s with %q: %d, want %d", tc.path, tc.auth, w.Code, tc.code)
		}
	}
	a, err := newSelfToken()
	b, err2 := newSelfToken()
	if err != nil || err2 != nil || len(a) != 64 || a == b {
		t.Errorf("tokens %q %q: %v %v", a, b, err, err2)
	}
}

func TestLoopbackHostOnly(t *testing.T) {
	h := loopbackHostOnly(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for host, code := range map[string]int{
		"127.0.0.1:9090": http.StatusOK, "localhost:9090": http.StatusOK, "[::1]:9090": http.StatusOK, "127.0.0.1": http.StatusOK,
		"rebound.example:9090": http.StatusForbidden, "10.0.0.1:9090": http.StatusForbidden, "": http.StatusForbidden,
	} {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/query", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != code {
			t.Errorf("Host %q: %d, want %d", host, w.Code, code)
		}
	}
}

func TestLoopbackServerRefusesOtherAddresses(t *testing.T) {
	// Every address (the unspecified one) is not loopback: refused, and
	// the listener closed at once.
	if l, err := newLoopbackServer(":0", http.NotFoundHandler()); err == nil {
		_ = l.close()
		t.Fatal("listener on every address accepted")
	}
	l, err := newLoopbackServer("127.0.0.1:0", http.NotFoundHandler())
	if err != nil {
		t.Fatal(err)
	}
	l.start()
	if err := l.shutdown(0); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := l.close(); err != nil {
		t.Errorf("close after shutdown: %v", err)
	}
}
