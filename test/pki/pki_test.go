package pki

import (
	"crypto/x509"
	"testing"
	"time"
)

// TestLoadCARoundTrip: a CA written and read back signs leaves that verify
// against the original, with the usages asked for.
func TestLoadCARoundTrip(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("test-ca", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Write(dir, "x"); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(dir, "x")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := loaded.Issue(Leaf{CN: "metrics-gateway", Client: true, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ParseCertPEM(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client cert from the reloaded CA does not verify against the original: %v", err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate verified for server auth")
	}
}
