package cluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/metrics-gateway/metrics-gateway/test/pki"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// The service CIDR only configures the apiserver (it allocates ClusterIPs from it and puts
// its first address in the serving cert); nothing here routes traffic to it.
const (
	serviceCIDR    = "10.96.0.0/16"
	firstServiceIP = "10.96.0.1"
)

// File base names under Dir/pki. Each leaf is <name>.crt + <name>.key.
const (
	caName                = "ca"
	frontProxyCAName      = "front-proxy-ca"
	apiserverName         = "apiserver"
	frontProxyClientName  = "front-proxy-client"
	adminName             = "admin"
	kcmClientName         = "kube-controller-manager"
	schedulerClientName   = "kube-scheduler"
	kcmServingName        = "kube-controller-manager-serving"
	schedulerServingName  = "kube-scheduler-serving"
	serviceAccountKeyName = "sa"
)

// apiserverDNSNames are the names in-cluster clients and kubeadm-style tooling use for the
// apiserver; 127.0.0.1/localhost are what everything here actually dials.
var apiserverDNSNames = []string{
	"localhost",
	"kubernetes",
	"kubernetes.default",
	"kubernetes.default.svc",
	"kubernetes.default.svc.cluster.local",
}

// leafSpecs lists every leaf certificate the control plane needs and which CA signs it.
// The front-proxy client is signed by its own CA, as in kubeadm: aggregated servers trust
// that CA only for the requestheader identity, never for ordinary client certs.
func leafSpecs() []struct {
	name       string
	frontProxy bool
	spec       pki.Leaf
} {
	loopback := []net.IP{net.IPv4(127, 0, 0, 1)}
	return []struct {
		name       string
		frontProxy bool
		spec       pki.Leaf
	}{
		{apiserverName, false, pki.Leaf{CN: "kube-apiserver", DNS: apiserverDNSNames,
			IPs: []net.IP{net.IPv4(127, 0, 0, 1), net.ParseIP(firstServiceIP)}, Server: true}},
		{frontProxyClientName, true, pki.Leaf{CN: "front-proxy-client", Client: true}},
		{adminName, false, pki.Leaf{CN: "admin", Orgs: []string{"system:masters"}, Client: true}},
		{kcmClientName, false, pki.Leaf{CN: "system:kube-controller-manager", Client: true}},
		{schedulerClientName, false, pki.Leaf{CN: "system:kube-scheduler", Client: true}},
		{kcmServingName, false, pki.Leaf{CN: "kube-controller-manager", DNS: []string{"localhost"},
			IPs: loopback, Server: true}},
		{schedulerServingName, false, pki.Leaf{CN: "kube-scheduler", DNS: []string{"localhost"},
			IPs: loopback, Server: true}},
	}
}

// generatePKI writes every CA, leaf and the service-account key pair into dir.
func generatePKI(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := pki.NewCA("metrics-gateway-harness-ca", caValidity)
	if err != nil {
		return err
	}
	frontProxyCA, err := pki.NewCA("front-proxy-ca", caValidity)
	if err != nil {
		return err
	}
	if err := ca.Write(dir, caName); err != nil {
		return err
	}
	if err := frontProxyCA.Write(dir, frontProxyCAName); err != nil {
		return err
	}
	for _, l := range leafSpecs() {
		signer := ca
		if l.frontProxy {
			signer = frontProxyCA
		}
		certPEM, keyPEM, err := issue(signer, l.spec)
		if err != nil {
			return err
		}
		if err := pki.WritePair(dir, l.name, certPEM, keyPEM); err != nil {
			return err
		}
	}
	priv, pub, err := newSigningKey()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, serviceAccountKeyName+".key"), priv, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, serviceAccountKeyName+".pub"), pub, 0o644)
}

// writeKubeconfig writes a self-contained kubeconfig (data embedded, not file paths) so
// `export KUBECONFIG=...` keeps working if the pki directory is read from elsewhere.
func writeKubeconfig(path, server, user string, caPEM, certPEM, keyPEM []byte) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM}
	cfg.Contexts["local"] = &clientcmdapi.Context{Cluster: "local", AuthInfo: user}
	cfg.CurrentContext = "local"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}

// writeKubeconfigFromPKI builds a kubeconfig for the leaf certificate <leaf> in pkiDir.
func writeKubeconfigFromPKI(path, server, user, pkiDir, leaf string) error {
	caPEM, err := os.ReadFile(filepath.Join(pkiDir, caName+".crt"))
	if err != nil {
		return err
	}
	certPEM, err := os.ReadFile(filepath.Join(pkiDir, leaf+".crt"))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(filepath.Join(pkiDir, leaf+".key"))
	if err != nil {
		return err
	}
	return writeKubeconfig(path, server, user, caPEM, certPEM, keyPEM)
}
