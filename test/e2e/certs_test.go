package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
	"github.com/metrics-gateway/metrics-gateway/test/env"
)

// testManagedServingCert restarts the gateway without the certificate the
// harness issued, as two replicas started at the same moment on the empty
// Secret manifests/base ships, as the ha overlay runs them. With the RBAC
// of manifests/base only (the harness runs them as that ServiceAccount; it
// grants no create on Secrets), they race to store the CA and serving
// certificate in that one Secret and put the
// CA into the APIServices, which become Available with it; both serve the
// Secret's certificate. With a 3m validity renewed 2m ahead, the
// certificate rotates about a minute later, once, and both replicas serve
// the new one while the APIServices stay Available throughout. It changes
// the gateway's certificate for good, so it runs last.
func testManagedServingCert(t *testing.T) {
	logsOnFailure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	const validity, renewBefore = 3 * time.Minute, 2 * time.Minute
	start := time.Now()
	replica, err := e.Gateway.RestartWithManagedCertReplicas(ctx, validity, renewBefore)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("second replica's log:\n%s", replica.LogTail(40))
		}
		if err := replica.Stop(); err != nil {
			t.Errorf("stop the second replica: %v", err)
		}
	})
	agg, err := e.Cluster.AggregatorClient()
	if err != nil {
		t.Fatal(err)
	}
	// It did so without create on Secrets, which the base's RBAC withholds.
	for _, verb := range []string{"create", "list"} {
		out, _ := e.Kubectl(ctx, "auth", "can-i", verb, "secrets", "-n", cluster.GatewayServiceNamespace,
			"--as", "system:serviceaccount:"+cluster.GatewayServiceNamespace+":"+env.GatewayServiceAccount)
		if strings.TrimSpace(out) != "no" {
			t.Errorf("the gateway's ServiceAccount may %s Secrets in %s: %q", verb, cluster.GatewayServiceNamespace, out)
		}
	}
	secrets := e.Client.CoreV1().Secrets(cluster.GatewayServiceNamespace)
	secret, err := secrets.Get(ctx, env.ServingCertSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the gateway's Secret: %v", err)
	}
	ca := secret.Data["ca.crt"]
	// Every APIService carries the Secret's CA, not the harness's, and is
	// Available with it.
	eventually(t, 2*time.Minute, "APIServices Available with the gateway's caBundle", func() error {
		for _, gv := range env.GatewayAPIs() {
			svc, err := agg.ApiregistrationV1().APIServices().Get(ctx, gv.Version+"."+gv.Group, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if !bytes.Equal(svc.Spec.CABundle, ca) || svc.Spec.InsecureSkipTLSVerify {
				return fmt.Errorf("%s: caBundle is not the gateway's CA", svc.Name)
			}
			if !available(svc) {
				return fmt.Errorf("%s not Available: %v", svc.Name, svc.Status.Conditions)
			}
		}
		return nil
	})
	// Both replicas serve the one certificate in the Secret: the loser of
	// the update race (a resourceVersion conflict) took the winner's
	// instead of writing its own.
	var first *x509.Certificate
	eventually(t, 30*time.Second, "both replicas serving the Secret's certificate", func() error {
		var err error
		first, err = sharedCert(ctx, replica, ca)
		return err
	})
	t.Logf("both replicas serve the managed certificate %.1fs after the restart began: serial %x, valid until %s", time.Since(start).Seconds(), first.SerialNumber, first.NotAfter.Format(time.TimeOnly))
	for name, g := range map[string]*env.Gateway{"gateway": e.Gateway, "replica": replica} {
		for _, line := range strings.Split(g.LogTail(400), "\n") {
			if strings.Contains(strings.ToLower(line), "certificate secret") {
				t.Logf("%s: %s", name, line)
			}
		}
	}

	// Rotation, with every APIService Available at every look.
	var second *x509.Certificate
	pollEvery(t, 2*time.Second, validity, "serving certificate rotated", func() error {
		for _, gv := range env.GatewayAPIs() {
			svc, err := agg.ApiregistrationV1().APIServices().Get(ctx, gv.Version+"."+gv.Group, metav1.GetOptions{})
			if err == nil && !available(svc) {
				t.Errorf("%s became unavailable during rotation: %v", svc.Name, svc.Status.Conditions)
			}
		}
		second = servedCert(t, e.Gateway.Port, ca)
		if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
			return fmt.Errorf("still serial %x", first.SerialNumber)
		}
		return nil
	})
	t.Logf("rotated %s after the first was issued: serial %x, valid until %s", second.NotBefore.Sub(first.NotBefore).Round(time.Second), second.SerialNumber, second.NotAfter.Format(time.TimeOnly))
	// One rotation, shared: both replicas end up on the Secret's new
	// certificate, the one the aggregator's replica serves.
	eventually(t, 30*time.Second, "both replicas serving the rotated certificate", func() error {
		c, err := sharedCert(ctx, replica, ca)
		if err != nil {
			return err
		}
		if c.SerialNumber.Cmp(second.SerialNumber) != 0 {
			return fmt.Errorf("the replicas share serial %x, not the rotated %x", c.SerialNumber, second.SerialNumber)
		}
		return nil
	})
	// The aggregator reaches the gateway on the new certificate.
	eventually(t, 30*time.Second, "an aggregated request after rotation", func() error {
		_, err := e.Kubectl(ctx, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes")
		return err
	})
}

// sharedCert checks that the gateway and replica both serve the leaf in the
// serving-certificate Secret, verified against ca, and returns it.
func sharedCert(ctx context.Context, replica *env.Gateway, ca []byte) (*x509.Certificate, error) {
	s, err := e.Client.CoreV1().Secrets(cluster.GatewayServiceNamespace).Get(ctx, env.ServingCertSecret, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(s.Data["tls.crt"])
	if block == nil {
		return nil, fmt.Errorf("no certificate in the Secret's tls.crt")
	}
	stored, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, err
	}
	for _, g := range []*env.Gateway{e.Gateway, replica} {
		c, err := dialCert(g.Port, ca)
		if err != nil {
			return nil, fmt.Errorf("replica on port %d: %w", g.Port, err)
		}
		if c.SerialNumber.Cmp(stored.SerialNumber) != 0 {
			return nil, fmt.Errorf("replica on port %d serves serial %x, the Secret holds %x", g.Port, c.SerialNumber, stored.SerialNumber)
		}
	}
	return stored, nil
}

func available(svc *apiregv1.APIService) bool {
	for _, c := range svc.Status.Conditions {
		if c.Type == apiregv1.Available {
			return c.Status == apiregv1.ConditionTrue
		}
	}
	return false
}

// servedCert is the leaf certificate served on port, verified against ca
// for the Service name, as the aggregator verifies it.
func servedCert(t *testing.T, port int, ca []byte) *x509.Certificate {
	t.Helper()
	c, err := dialCert(port, ca)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func dialCert(port int, ca []byte) (*x509.Certificate, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in the gateway's ca.crt")
	}
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{
		RootCAs: pool, ServerName: cluster.GatewayServiceName + "." + cluster.GatewayServiceNamespace + ".svc", MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		return nil, fmt.Errorf("TLS with the gateway's own CA: %w", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}
