package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
	"github.com/metrics-gateway/metrics-gateway/test/env"
)

// testManagedServingCert restarts the gateway without the certificate the
// harness issued. With the RBAC of manifests/base only (the harness runs
// it as that ServiceAccount), it creates its CA and serving certificate in
// a Secret and puts the CA into its APIServices, which become Available
// with it. With a 3m validity renewed 2m ahead, the certificate rotates
// about a minute later, and the APIServices stay Available throughout.
// It changes the gateway's certificate for good, so it runs last.
func testManagedServingCert(t *testing.T) {
	logsOnFailure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	const validity, renewBefore = 3 * time.Minute, 2 * time.Minute
	start := time.Now()
	if err := e.Gateway.RestartWithManagedCert(ctx, validity, renewBefore); err != nil {
		t.Fatal(err)
	}
	agg, err := e.Cluster.AggregatorClient()
	if err != nil {
		t.Fatal(err)
	}
	secret, err := e.Client.CoreV1().Secrets(cluster.GatewayServiceNamespace).Get(ctx, env.ServingCertSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the gateway's Secret: %v", err)
	}
	ca := secret.Data["ca.crt"]
	// Every APIService carries the gateway's CA, not the harness's, and is
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
	first := servedCert(t, ca)
	t.Logf("managed certificate served %.1fs after the restart began: serial %x, valid until %s", time.Since(start).Seconds(), first.SerialNumber, first.NotAfter.Format(time.TimeOnly))

	// Rotation, with every APIService Available at every look.
	var second *x509.Certificate
	pollEvery(t, 2*time.Second, validity, "serving certificate rotated", func() error {
		for _, gv := range env.GatewayAPIs() {
			svc, err := agg.ApiregistrationV1().APIServices().Get(ctx, gv.Version+"."+gv.Group, metav1.GetOptions{})
			if err == nil && !available(svc) {
				t.Errorf("%s became unavailable during rotation: %v", svc.Name, svc.Status.Conditions)
			}
		}
		second = servedCert(t, ca)
		if second.SerialNumber.Cmp(first.SerialNumber) == 0 {
			return fmt.Errorf("still serial %x", first.SerialNumber)
		}
		return nil
	})
	t.Logf("rotated %s after the first was issued: serial %x, valid until %s", second.NotBefore.Sub(first.NotBefore).Round(time.Second), second.SerialNumber, second.NotAfter.Format(time.TimeOnly))
	// The aggregator reaches the gateway on the new certificate.
	eventually(t, 30*time.Second, "an aggregated request after rotation", func() error {
		_, err := e.Kubectl(ctx, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes")
		return err
	})
}

func available(svc *apiregv1.APIService) bool {
	for _, c := range svc.Status.Conditions {
		if c.Type == apiregv1.Available {
			return c.Status == apiregv1.ConditionTrue
		}
	}
	return false
}

// servedCert is the gateway's leaf certificate, verified against ca for the
// Service name, as the aggregator verifies it.
func servedCert(t *testing.T, ca []byte) *x509.Certificate {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("no certificate in the gateway's ca.crt")
	}
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", e.Gateway.Port), &tls.Config{
		RootCAs: pool, ServerName: cluster.GatewayServiceName + "." + cluster.GatewayServiceNamespace + ".svc", MinVersion: tls.VersionTLS12,
	})
	if err != nil {
		t.Fatalf("TLS to the gateway with its own CA: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}
