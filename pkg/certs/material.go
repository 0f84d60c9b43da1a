package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

const (
	// caCertKey holds the trust bundle: the signing CA first, then older
	// CAs that have not expired yet. It is what spec.caBundle is set to.
	caCertKey = corev1.ServiceAccountRootCAKey
	// caKeyKey holds the private key of the first CA in caCertKey, the only
	// one that signs.
	caKeyKey = "ca.key"

	// backdate moves NotBefore into the past so that a kube-apiserver whose
	// clock runs a little behind ours accepts a certificate just issued.
	backdate = time.Minute
)

// material is what the Secret holds, parsed. Unusable parts are nil.
type material struct {
	cas      []*x509.Certificate // newest first; cas[0] signs when caKey matches it
	caKey    crypto.Signer
	caKeyPEM []byte
	certPEM  []byte
	keyPEM   []byte
	leaf     *x509.Certificate // nil unless certPEM and keyPEM form a pair
}

// parseMaterial reads the Secret's data leniently: whatever cannot be parsed
// is left out, and plan replaces it.
func parseMaterial(data map[string][]byte) material {
	var m material
	if cas, err := cert.ParseCertsPEM(data[caCertKey]); err == nil {
		for _, c := range cas {
			if c.IsCA {
				m.cas = append(m.cas, c)
			}
		}
	}
	if k, err := keyutil.ParsePrivateKeyPEM(data[caKeyKey]); err == nil {
		if s, ok := k.(crypto.Signer); ok && len(m.cas) > 0 && publicKeyEqual(m.cas[0], s) {
			m.caKey, m.caKeyPEM = s, data[caKeyKey]
		}
	}
	if pair, err := tls.X509KeyPair(data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey]); err == nil {
		if leaf, err := x509.ParseCertificate(pair.Certificate[0]); err == nil {
			m.leaf = leaf
			m.certPEM, m.keyPEM = data[corev1.TLSCertKey], data[corev1.TLSPrivateKeyKey]
		}
	}
	return m
}

// data is the Secret's data for m.
func (m material) data() (map[string][]byte, error) {
	bundle, err := cert.EncodeCertificates(m.cas...)
	if err != nil {
		return nil, fmt.Errorf("encode CA bundle: %w", err)
	}
	return map[string][]byte{
		caCertKey:               bundle,
		caKeyKey:                m.caKeyPEM,
		corev1.TLSCertKey:       m.certPEM,
		corev1.TLSPrivateKeyKey: m.keyPEM,
	}, nil
}

// bundle is the PEM trust bundle for spec.caBundle.
func (m material) bundle() []byte {
	b, _ := cert.EncodeCertificates(m.cas...) // only fails on an empty list
	return b
}

func publicKeyEqual(c *x509.Certificate, k crypto.Signer) bool {
	pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pub.Equal(k.Public())
}

// policy decides what to issue and when. Durations are validated by
// Options.validate.
type policy struct {
	serviceName   string
	dnsNames      []string // dnsNames[0] is the name the aggregator dials
	validity      time.Duration
	renewBefore   time.Duration
	caValidity    time.Duration
	caRenewBefore time.Duration
	trustDelay    time.Duration
}

// plan returns the material to store at now and why it differs from cur
// (nil when it does not).
//
// The CA rotates when less than caRenewBefore of it is left. The new CA is
// prepended to the bundle, and older CAs stay in it until they expire, so
// every certificate already served keeps verifying. A new CA signs its first
// serving certificate only trustDelay after it was created, so that every
// kube-apiserver has seen the bundle that contains it by then; until that
// time a due but still valid serving certificate is kept.
func (p policy) plan(cur material, now time.Time) (material, []string, error) {
	next := cur
	var why []string
	next.cas = slices.DeleteFunc(slices.Clone(cur.cas), func(c *x509.Certificate) bool { return !now.Before(c.NotAfter) })
	if len(next.cas) < len(cur.cas) {
		why = append(why, "expired CA removed from the bundle")
	}
	if reason := p.caReason(cur, next.cas, now); reason != "" {
		ca, key, keyPEM, err := p.newCA(now)
		if err != nil {
			return material{}, nil, err
		}
		next.cas = append([]*x509.Certificate{ca}, next.cas...)
		next.caKey, next.caKeyPEM = key, keyPEM
		why = append(why, reason)
	}

	reason, usable := p.leafState(next, now)
	if reason == "" {
		return next, why, nil
	}
	if usable {
		if trusted := published(next.cas[0]).Add(p.trustDelay); now.Before(trusted) && trusted.Before(next.leaf.NotAfter) {
			return next, why, nil
		}
	}
	certPEM, keyPEM, leaf, err := p.newLeaf(next.cas[0], next.caKey, now)
	if err != nil {
		return material{}, nil, err
	}
	next.certPEM, next.keyPEM, next.leaf = certPEM, keyPEM, leaf
	return next, append(why, reason), nil
}

// caReason says why a new CA must be created ("" when it need not); valid
// are cur's CAs that have not expired.
func (p policy) caReason(cur material, valid []*x509.Certificate, now time.Time) string {
	switch {
	case len(valid) == 0:
		return "no valid CA"
	case cur.caKey == nil || valid[0] != cur.cas[0]:
		return "no key for the newest CA"
	case !now.Before(valid[0].NotAfter.Add(-p.caRenewBefore)):
		return fmt.Sprintf("CA expires at %s", valid[0].NotAfter.Format(time.RFC3339))
	}
	return ""
}

// leafState says why the serving certificate in m must be reissued ("" when
// it need not) and whether it can still be served meanwhile.
func (p policy) leafState(m material, now time.Time) (reason string, usable bool) {
	if m.leaf == nil {
		return "no valid serving certificate", false
	}
	if !slices.Equal(sorted(m.leaf.DNSNames), sorted(p.dnsNames)) {
		return fmt.Sprintf("serving certificate names %v, want %v", m.leaf.DNSNames, p.dnsNames), false
	}
	roots := x509.NewCertPool()
	for _, c := range m.cas {
		roots.AddCert(c)
	}
	_, err := m.leaf.Verify(x509.VerifyOptions{
		Roots:       roots,
		DNSName:     p.dnsNames[0],
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Sprintf("serving certificate does not verify: %v", err), false
	}
	if renew := m.leaf.NotAfter.Add(-p.renewBefore); !now.Before(renew) {
		return fmt.Sprintf("serving certificate expires at %s", m.leaf.NotAfter.Format(time.RFC3339)), true
	}
	return "", true
}

// nextEvent is the earliest time after now at which plan may return
// something new for m, a material plan returned; zero if there is none.
func (p policy) nextEvent(m material, now time.Time) time.Time {
	events := []time.Time{
		m.cas[0].NotAfter.Add(-p.caRenewBefore),
		m.leaf.NotAfter.Add(-p.renewBefore),
	}
	if !bytes.Equal(m.leaf.AuthorityKeyId, m.cas[0].SubjectKeyId) {
		// A due serving certificate may be waiting for the new CA.
		events = append(events, published(m.cas[0]).Add(p.trustDelay))
	}
	for _, c := range m.cas {
		events = append(events, c.NotAfter)
	}
	var next time.Time
	for _, e := range events {
		if e.After(now) && (next.IsZero() || e.Before(next)) {
			next = e
		}
	}
	return next
}

// published is when our CA c was created and first put into the bundle.
func published(c *x509.Certificate) time.Time { return c.NotBefore.Add(backdate) }

// newCA creates a self-signed CA. cert.NewSelfSignedCACert is not used: it
// reads the wall clock and fixes the validity at ten years, which leaves CA
// rotation untestable.
func (p policy) newCA(now time.Time) (*x509.Certificate, crypto.Signer, []byte, error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: fmt.Sprintf("%s-ca@%d", p.serviceName, now.Unix())},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(p.caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	return ca, key, keyPEM, nil
}

// newLeaf issues a serving certificate signed by ca; it never outlives ca.
func (p policy) newLeaf(ca *x509.Certificate, caKey crypto.Signer, now time.Time) (certPEM, keyPEM []byte, leaf *x509.Certificate, err error) {
	key, keyPEM, err := newKey()
	if err != nil {
		return nil, nil, nil, err
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	notAfter := now.Add(p.validity)
	if ca.NotAfter.Before(notAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: p.dnsNames[0]},
		DNSNames:              p.dnsNames,
		NotBefore:             now.Add(-backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("create serving certificate: %w", err)
	}
	if leaf, err = x509.ParseCertificate(der); err != nil {
		return nil, nil, nil, fmt.Errorf("parse serving certificate: %w", err)
	}
	certPEM, err = cert.EncodeCertificates(leaf)
	if err != nil {
		return nil, nil, nil, err
	}
	return certPEM, keyPEM, leaf, nil
}

func newKey() (crypto.Signer, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	return key, keyPEM, nil
}

func newSerial() (*big.Int, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("generate serial number: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// dataEqual reports whether a Secret's data is exactly want.
func dataEqual(got, want map[string][]byte) bool {
	if len(got) != len(want) {
		return false
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || !bytes.Equal(g, v) {
			return false
		}
	}
	return true
}
