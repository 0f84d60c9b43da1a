package cluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"

	"github.com/metrics-gateway/metrics-gateway/test/pki"
)

// Validity of generated certificates. A harness cluster lives minutes to days; a year
// keeps `localcluster up` usable for a long demo without ever reaching expiry.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	leafValidity = 365 * 24 * time.Hour
)

// issue signs a leaf of the harness's validity.
func issue(ca *pki.CA, l pki.Leaf) (certPEM, keyPEM []byte, err error) {
	l.Validity = leafValidity
	return ca.Issue(l)
}

// newSigningKey makes the service-account token key pair: the private half signs
// (apiserver's --service-account-signing-key-file, KCM's legacy token controller), the
// public half verifies (--service-account-key-file).
func newSigningKey() (privPEM, pubPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate service-account key: %w", err)
	}
	privPEM, err = pki.EncodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, fmt.Errorf("marshal service-account public key: %w", err)
	}
	return privPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}
