package main

import (
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/metrics-gateway/metrics-gateway/test/sim"
)

// options are the command line, defaulted by the flag set.
type options struct {
	kubeconfig        string
	nodes             int
	nodePrefix        string
	firstIP           string
	kubeletPort       int
	tokenFile         string
	clientCAFile      string
	certDir           string
	podCIDRBase       string
	controlAddr       string
	controlFile       string
	deleteNodesOnExit bool
}

func (o *options) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig with rights to manage nodes, leases and pods (required)")
	fs.IntVar(&o.nodes, "nodes", 3, "number of nodes to simulate")
	fs.StringVar(&o.nodePrefix, "node-prefix", "sim-node-", "node i is named PREFIXi, from 0")
	fs.StringVar(&o.firstIP, "first-ip", "127.0.0.10", "node i listens on first-ip + i; must stay in 127.0.0.0/8")
	fs.IntVar(&o.kubeletPort, "kubelet-port", 10250, "port of every node's kubelet endpoints")
	fs.StringVar(&o.tokenFile, "token-file", "", "file holding the bearer token the kubelet endpoints require (required)")
	fs.StringVar(&o.clientCAFile, "client-ca-file", "", "if set, clients presenting a certificate signed by this CA are authenticated too (a kubelet's --client-ca-file)")
	fs.StringVar(&o.certDir, "cert-dir", "", "directory to write the kubelet CA (ca.crt) and serving certificate into (required)")
	fs.StringVar(&o.podCIDRBase, "pod-cidr-base", "127.1.0.0", "pod IPs are allocated from this address + 1 upward, within 127.0.0.0/8")
	fs.StringVar(&o.controlAddr, "control-addr", "127.0.0.1:0", "address of the plain-HTTP control API")
	fs.StringVar(&o.controlFile, "control-file", "", "if set, the control API's host:port is written here once ready")
	fs.BoolVar(&o.deleteNodesOnExit, "delete-nodes-on-exit", false, "delete the Node and Lease objects on SIGTERM/SIGINT")
}

// config is the validated form of options.
type config struct {
	options
	token       string
	clientCAs   *x509.CertPool
	nodeConfigs []sim.NodeConfig
	podBase     netip.Addr
}

// complete validates every option at once and reads the token.
func (o options) complete() (config, error) {
	c := config{options: o}
	var errs []error
	if o.kubeconfig == "" {
		errs = append(errs, errors.New("--kubeconfig is required"))
	}
	if o.nodes < 1 || o.nodes > 1000 {
		errs = append(errs, fmt.Errorf("--nodes=%d: want 1 to 1000", o.nodes))
	}
	if o.nodePrefix == "" {
		errs = append(errs, errors.New("--node-prefix is empty"))
	}
	if o.kubeletPort <= 0 || o.kubeletPort > 65535 {
		errs = append(errs, fmt.Errorf("--kubelet-port=%d out of range", o.kubeletPort))
	}
	if o.certDir == "" {
		errs = append(errs, errors.New("--cert-dir is required"))
	}
	if o.tokenFile == "" {
		errs = append(errs, errors.New("--token-file is required"))
	} else if b, err := os.ReadFile(o.tokenFile); err != nil {
		errs = append(errs, fmt.Errorf("--token-file: %w", err))
	} else if c.token = strings.TrimSpace(string(b)); c.token == "" {
		errs = append(errs, fmt.Errorf("--token-file %s is empty", o.tokenFile))
	}
	if o.clientCAFile != "" {
		if b, err := os.ReadFile(o.clientCAFile); err != nil {
			errs = append(errs, fmt.Errorf("--client-ca-file: %w", err))
		} else if c.clientCAs = x509.NewCertPool(); !c.clientCAs.AppendCertsFromPEM(b) {
			errs = append(errs, fmt.Errorf("--client-ca-file %s holds no PEM certificate", o.clientCAFile))
		}
	}
	var err error
	if c.podBase, err = netip.ParseAddr(o.podCIDRBase); err != nil {
		errs = append(errs, fmt.Errorf("--pod-cidr-base: %w", err))
	}
	first, err := netip.ParseAddr(o.firstIP)
	if err != nil {
		errs = append(errs, fmt.Errorf("--first-ip: %w", err))
	} else if o.nodes >= 1 {
		ip := first
		for i := range o.nodes {
			if !ip.IsValid() || !ip.Is4() || !ip.IsLoopback() {
				errs = append(errs, fmt.Errorf("--first-ip=%s: node %d's address leaves 127.0.0.0/8", o.firstIP, i))
				break
			}
			c.nodeConfigs = append(c.nodeConfigs, sim.NodeConfig{Name: fmt.Sprintf("%s%d", o.nodePrefix, i), IP: ip})
			ip = ip.Next()
		}
	}
	return c, errors.Join(errs...)
}
