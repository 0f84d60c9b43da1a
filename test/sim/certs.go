package sim

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/metrics-gateway/metrics-gateway/test/pki"
)

// File names written into the cert dir.
const (
	CAFile          = "ca.crt"
	ServingCertFile = "kubelet.crt" // for inspection; the key stays in memory
)

// certValidity is long enough for any test run and short enough that a stray file
// is useless after a few days.
const certValidity = 7 * 24 * time.Hour

// GenerateCerts makes a fresh CA and one serving certificate, signed by it, valid
// for every node IP and name (and localhost), writes the CA and the serving
// certificate into dir and returns the serving pair. A fresh CA per run means a
// gateway can only verify kubelets of the run whose ca.crt it was given.
func GenerateCerts(dir string, nodes []NodeConfig) (tls.Certificate, error) {
	ca, err := pki.NewCA("simkubelet-ca", certValidity)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf := pki.Leaf{
		CN: "simkubelet", Orgs: []string{"system:nodes"}, Server: true, Validity: certValidity,
		DNS: []string{"localhost"}, IPs: []net.IP{net.ParseIP("127.0.0.1")},
	}
	for _, n := range nodes {
		leaf.DNS = append(leaf.DNS, n.Name)
		leaf.IPs = append(leaf.IPs, net.IP(n.IP.AsSlice()))
	}
	certPEM, keyPEM, err := ca.Issue(leaf)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return tls.Certificate{}, fmt.Errorf("create cert dir %s: %w", dir, err)
	}
	for name, b := range map[string][]byte{CAFile: ca.CertPEM, ServingCertFile: append(certPEM, ca.CertPEM...)} {
		if err := writeFileAtomic(filepath.Join(dir, name), b, 0o644); err != nil {
			return tls.Certificate{}, err
		}
	}
	return tls.X509KeyPair(append(certPEM, ca.CertPEM...), keyPEM)
}

// writeFileAtomic renames into place so a reader never sees half a file: the
// gateway may be reading ca.crt while a restarted simulator writes a new one.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}

// WriteFileAtomic is writeFileAtomic for the command's --control-file.
func WriteFileAtomic(path string, b []byte) error { return writeFileAtomic(path, b, 0o644) }
