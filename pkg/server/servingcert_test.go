package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"net/url"
	"testing"
	"time"

	"github.com/metrics-gateway/metrics-gateway/pkg/certs"
)

// TestGatewayManagesServingCert starts the gateway with no certificate
// given: it creates its CA and serving certificate in a Secret, serves
// with that certificate, and puts the CA into the caBundle of its own
// APIServices only.
func TestGatewayManagesServingCert(t *testing.T) {
	g := startGateway(t, "", func(o *Options) {
		o.ServingCert.Manage = true
		o.ServingCert.Namespace = "kube-system"
		o.ServingCert.APIServiceNames = append(o.ServingCert.APIServiceNames, "v1beta1.other.example.com")
	})
	g.api.mu.Lock()
	secret, ok := g.api.secrets["kube-system/"+certs.DefaultSecretName]
	writes := g.api.secretWrites
	g.api.mu.Unlock()
	if !ok {
		t.Fatal("no serving-certificate Secret created")
	}
	if writes != 1 || secret.Labels[certs.ManagedByLabel] != certs.ManagedByValue {
		t.Errorf("secret written %d times, labels %v", writes, secret.Labels)
	}
	ca := secret.Data["ca.crt"]
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatalf("ca.crt holds no certificate: %q", ca)
	}

	// The aggregator dials the Service name and verifies against caBundle.
	u, _ := url.Parse(g.url)
	eventually(t, 10*time.Second, "TLS with the managed certificate", func() error {
		conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: pool, ServerName: "metrics-gateway.kube-system.svc", MinVersion: tls.VersionTLS12})
		if err != nil {
			return err
		}
		return conn.Close()
	})

	want := base64.StdEncoding.EncodeToString(ca)
	for _, name := range []string{"v1beta1.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io"} {
		spec := g.api.apiServiceSpec(name)
		if spec["caBundle"] != want || spec["insecureSkipTLSVerify"] != false {
			t.Errorf("%s: caBundle set %v, insecureSkipTLSVerify %v; want the Secret's CA and false", name, spec["caBundle"] == want, spec["insecureSkipTLSVerify"])
		}
	}
	// Named, but served by another Service: left alone.
	if spec := g.api.apiServiceSpec("v1beta1.other.example.com"); spec["caBundle"] != nil || spec["insecureSkipTLSVerify"] != true {
		t.Errorf("another server's APIService changed: %v", spec)
	}
}
