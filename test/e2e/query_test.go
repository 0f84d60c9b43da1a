package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// queryNS holds the ServiceAccounts that read the Prometheus API: grafana,
// bound to the shipped ClusterRole docs/grafana.md gives, and nobody, bound
// to nothing.
const queryNS = "e2e-query"

// testPrometheusAPI reads the gateway's /api/v1 as Grafana would, with
// ServiceAccount tokens reviewed by the real kube-apiserver, then runs
// every expression of the shipped dashboards and requires data from each.
func testPrometheusAPI(t *testing.T) {
	logsOnFailure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ensurePodinfo(ctx, t) // the dashboards' workload
	grafana, nobody := queryTokens(ctx, t)
	client := gatewayHTTPClient(t)
	// The datasource URL docs/grafana.md gives: the API under /prometheus.
	root := fmt.Sprintf("https://127.0.0.1:%d", e.Gateway.Port)
	base := root + "/prometheus"

	now := time.Now()
	start, end := fmt.Sprint(now.Add(-10*time.Minute).Unix()), fmt.Sprint(now.Unix())
	endpoints := []struct {
		method, path string
		form         url.Values
	}{
		{http.MethodGet, "/api/v1/query?query=up", nil},
		{http.MethodPost, "/api/v1/query", url.Values{"query": {"up"}}},
		{http.MethodGet, "/api/v1/query_range?query=up&step=15&start=" + start + "&end=" + end, nil},
		{http.MethodPost, "/api/v1/query_range", url.Values{"query": {"up"}, "start": {start}, "end": {end}, "step": {"15"}}},
		{http.MethodGet, "/api/v1/series?match[]=up", nil},
		{http.MethodGet, "/api/v1/labels", nil},
		{http.MethodGet, "/api/v1/label/job/values", nil},
		{http.MethodGet, "/api/v1/metadata", nil},
		{http.MethodGet, "/api/v1/status/buildinfo", nil},
	}
	t.Run("401 without a token, 403 without the rule, 200 with it", func(t *testing.T) {
		for _, ep := range endpoints {
			for _, c := range []struct {
				who, token string
				code       int
			}{{"anonymous", "", http.StatusUnauthorized}, {"nobody", nobody, http.StatusForbidden}, {"grafana", grafana, http.StatusOK}} {
				code, body := request(ctx, t, client, ep.method, base+ep.path, ep.form, c.token)
				if code != c.code {
					t.Errorf("%s %s as %s: %d %s, want %d", ep.method, ep.path, c.who, code, body, c.code)
				}
				if c.code == http.StatusOK && !strings.HasPrefix(body, `{"status":"success"`) {
					t.Errorf("%s %s: %s", ep.method, ep.path, body)
				}
			}
		}
		// The bare /api/v1 serves no data to anyone without a rule for it.
		for who, token := range map[string]string{"nobody": nobody, "grafana": grafana} {
			if code, body := request(ctx, t, client, http.MethodGet, root+"/api/v1/query?query=up", nil, token); code == http.StatusOK {
				t.Errorf("GET /api/v1/query as %s: %d %s", who, code, body)
			}
		}
		code, body := request(ctx, t, client, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape("sum("), nil, grafana)
		if code != http.StatusBadRequest || !strings.Contains(body, `"errorType":"bad_data"`) {
			t.Errorf("bad PromQL: %d %s, want 400 bad_data", code, body)
		}
	})

	t.Run("every dashboard expression returns data", func(t *testing.T) {
		dir := t.TempDir()
		tokenFile, caFile := filepath.Join(dir, "token"), filepath.Join(dir, "ca.crt")
		if err := os.WriteFile(tokenFile, []byte(grafana), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(caFile, e.Gateway.CABundle, 0o600); err != nil {
			t.Fatal(err)
		}
		// podinfo (from the custom metrics scenario) serves
		// http_requests_total; cAdvisor is on in the environment's config.
		cmd := exec.CommandContext(ctx, filepath.Join(e.BinDir, "dashcheck"),
			"-url", base, "-token-file", tokenFile, "-ca-file", caFile, "-server-name", "metrics-gateway.kube-system.svc",
			"-var", "metric=http_requests_total", "-wait", "2m")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		t.Logf("dashcheck:\n%s", out.String())
		if err != nil {
			t.Fatalf("dashcheck: %v", err)
		}
	})
}

// queryTokens creates the two ServiceAccounts and returns their tokens.
func queryTokens(ctx context.Context, t *testing.T) (grafana, nobody string) {
	t.Helper()
	c := e.Client
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: queryNS}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	// The role manifests/base ships for this (docs/grafana.md), applied by
	// the harness with the rest of the base's RBAC: the query API is
	// non-resource URLs under /prometheus (the default system:discovery role
	// grants get /api/* to every authenticated user, so /api/v1 itself could
	// not be guarded).
	const role = "metrics-gateway:query-api-reader"
	if _, err := c.RbacV1().ClusterRoles().Get(ctx, role, metav1.GetOptions{}); err != nil {
		t.Fatalf("the shipped ClusterRole %s: %v", role, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-metrics-gateway-query"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Namespace: queryNS, Name: "grafana"}},
	}
	if _, err := c.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	token := func(name string) string {
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: queryNS}}
		if _, err := c.CoreV1().ServiceAccounts(queryNS).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		tr, err := c.CoreV1().ServiceAccounts(queryNS).CreateToken(ctx, name, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("token for %s: %v", name, err)
		}
		return tr.Status.Token
	}
	return token("grafana"), token("nobody")
}

// gatewayHTTPClient trusts the gateway's serving certificate and presents
// no client certificate.
func gatewayHTTPClient(t *testing.T) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(e.Gateway.CABundle) {
		t.Fatal("no certificate in the gateway's CA bundle")
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: "metrics-gateway.kube-system.svc",
	}}}
}

func request(ctx context.Context, t *testing.T, c *http.Client, method, u string, form url.Values, token string) (int, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
