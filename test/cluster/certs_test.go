package cluster

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/metrics-gateway/metrics-gateway/test/pki"
)

func readCert(t *testing.T, dir, name string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name+".crt"))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCertPEM(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return cert
}

func pool(certs ...*x509.Certificate) *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return p
}

func TestGeneratePKI(t *testing.T) {
	dir := t.TempDir()
	if err := generatePKI(dir); err != nil {
		t.Fatal(err)
	}
	ca := readCert(t, dir, caName)
	frontProxyCA := readCert(t, dir, frontProxyCAName)
	for _, c := range []*x509.Certificate{ca, frontProxyCA} {
		if !c.IsCA || c.KeyUsage&x509.KeyUsageCertSign == 0 {
			t.Errorf("%s: IsCA=%v usage=%v, want a signing CA", c.Subject.CommonName, c.IsCA, c.KeyUsage)
		}
	}
	client := x509.ExtKeyUsageClientAuth
	server := x509.ExtKeyUsageServerAuth
	tests := []struct {
		leaf    string
		root    *x509.Certificate
		other   *x509.Certificate // must NOT verify against this CA
		usage   x509.ExtKeyUsage
		cn      string
		orgs    []string
		dnsName string // verified with VerifyOptions.DNSName when set
	}{
		{apiserverName, ca, frontProxyCA, server, "kube-apiserver", nil, "kubernetes.default.svc.cluster.local"},
		{frontProxyClientName, frontProxyCA, ca, client, "front-proxy-client", nil, ""},
		{adminName, ca, frontProxyCA, client, "admin", []string{"system:masters"}, ""},
		{kcmClientName, ca, frontProxyCA, client, "system:kube-controller-manager", nil, ""},
		{schedulerClientName, ca, frontProxyCA, client, "system:kube-scheduler", nil, ""},
		{kcmServingName, ca, frontProxyCA, server, "kube-controller-manager", nil, "localhost"},
		{schedulerServingName, ca, frontProxyCA, server, "kube-scheduler", nil, "localhost"},
	}
	for _, tc := range tests {
		t.Run(tc.leaf, func(t *testing.T) {
			cert := readCert(t, dir, tc.leaf)
			opts := x509.VerifyOptions{Roots: pool(tc.root), KeyUsages: []x509.ExtKeyUsage{tc.usage}, DNSName: tc.dnsName}
			if _, err := cert.Verify(opts); err != nil {
				t.Errorf("verify against %s: %v", tc.root.Subject.CommonName, err)
			}
			opts.Roots = pool(tc.other)
			if _, err := cert.Verify(opts); err == nil {
				t.Errorf("verified against %s, want failure", tc.other.Subject.CommonName)
			}
			if cert.Subject.CommonName != tc.cn {
				t.Errorf("CN = %q, want %q", cert.Subject.CommonName, tc.cn)
			}
			if !slices.Equal(cert.Subject.Organization, tc.orgs) {
				t.Errorf("O = %q, want %q", cert.Subject.Organization, tc.orgs)
			}
			if cert.IsCA {
				t.Error("leaf is a CA")
			}
			if _, err := tls.LoadX509KeyPair(filepath.Join(dir, tc.leaf+".crt"), filepath.Join(dir, tc.leaf+".key")); err != nil {
				t.Errorf("key does not match certificate: %v", err)
			}
		})
	}
}

func TestAPIServerSANs(t *testing.T) {
	dir := t.TempDir()
	if err := generatePKI(dir); err != nil {
		t.Fatal(err)
	}
	cert := readCert(t, dir, apiserverName)
	roots := pool(readCert(t, dir, caName))
	for _, name := range append(slices.Clone(apiserverDNSNames), "127.0.0.1", firstServiceIP) {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("apiserver cert not valid for %s: %v", name, err)
		}
	}
	for _, name := range []string{"10.96.0.2", "example.com", "metrics-gateway.kube-system.svc"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err == nil {
			t.Errorf("apiserver cert valid for %s, want not", name)
		}
	}
	if !slices.ContainsFunc(cert.IPAddresses, func(ip net.IP) bool { return ip.Equal(net.ParseIP(firstServiceIP)) }) {
		t.Errorf("IPs %v lack the first service IP %s", cert.IPAddresses, firstServiceIP)
	}
}

// The service-account pair must be two halves of one key, or every token the apiserver
// signs is rejected by its own authenticator.
func TestServiceAccountKeyPair(t *testing.T) {
	dir := t.TempDir()
	if err := generatePKI(dir); err != nil {
		t.Fatal(err)
	}
	privPEM, err := os.ReadFile(filepath.Join(dir, serviceAccountKeyName+".key"))
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := os.ReadFile(filepath.Join(dir, serviceAccountKeyName+".pub"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(privPEM)
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	block, _ = pem.Decode(pubPEM)
	if block.Type != "PUBLIC KEY" {
		t.Fatalf("public key PEM type %q", block.Type)
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte("token"))
	sig, err := ecdsa.SignASN1(rand.Reader, priv.(*ecdsa.PrivateKey), digest[:])
	if err != nil {
		t.Fatal(err)
	}
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
		t.Error("signature by sa.key does not verify with sa.pub")
	}
	if fi, err := os.Stat(filepath.Join(dir, serviceAccountKeyName+".key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("sa.key mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
}
