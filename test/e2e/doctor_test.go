package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	apiregv1ac "k8s.io/kube-aggregator/pkg/client/applyconfiguration/apiregistration/v1"

	"github.com/metrics-gateway/metrics-gateway/test/cluster"
	"github.com/metrics-gateway/metrics-gateway/test/env"
)

// testDoctor runs `metrics-gateway doctor` as the gateway's ServiceAccount
// with the gateway's kubelet flags, as in its pod, first on the healthy
// cluster, then with the cluster broken on purpose, one way at a time:
// an untrusted kubelet CA, the gateway's ClusterRoleBinding gone, an
// APIService pointing at a Service that does not exist, one served by
// another Service, and kube-apiserver's requestheader allowed names not
// admitting its own proxy client. Each time doctor must exit 1 and name the
// problem and its fix; after each repair it passes again.
func testDoctor(t *testing.T) {
	logsOnFailure(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	healthy := func(what string) {
		t.Helper()
		eventually(t, 2*time.Minute, "doctor passing "+what, func() error {
			out, err := doctor(ctx)
			if err != nil {
				return errors.New(out)
			}
			return nil
		})
	}

	t.Run("healthy", func(t *testing.T) {
		// The scenario before restarts the gateway; an APIService condition
		// from the aggregator's check during that restart stays until its
		// next check, so doctor passes once the aggregator has looked again.
		var out string
		eventually(t, 2*time.Minute, "doctor passing on the healthy cluster", func() error {
			var err error
			if out, err = doctor(ctx); err != nil {
				return fmt.Errorf("%w:\n%s", err, out)
			}
			return nil
		})
		for _, want := range []string{"PASS requestheader-client-ca", "PASS requestheader-allowed-names: [front-proxy-client]",
			"PASS apiservice v1beta1.metrics.k8s.io", "PASS api-group-owner", "PASS rbac create serviceaccounts/token kube-system/metrics-gateway-kubelet",
			"PASS rbac kubelet-service-account get nodes/metrics", "PASS rbac kubelet-service-account update secrets", "PASS kubelet sim-node-"} {
			if !strings.Contains(out, want) {
				t.Errorf("no %q in:\n%s", want, out)
			}
		}
		t.Logf("doctor:\n%s", out)
	})

	t.Run("kubelet CA not trusted", func(t *testing.T) {
		ca, err := e.Cluster.CACert()
		if err != nil {
			t.Fatal(err)
		}
		wrong := filepath.Join(t.TempDir(), "cluster-ca.crt")
		if err := os.WriteFile(wrong, ca, 0o600); err != nil {
			t.Fatal(err)
		}
		expectFailure(ctx, t, []string{"--kubelet-certificate-authority", wrong},
			"FAIL kubelet sim-node-", "does not trust the kubelet's serving certificate", "Fix: give --kubelet-certificate-authority")
	})

	t.Run("gateway ClusterRoleBinding missing", func(t *testing.T) {
		const name = "system:metrics-gateway"
		crbs := e.Client.RbacV1().ClusterRoleBindings()
		crb, err := crbs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := crbs.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		restored := false
		restore := func() {
			if restored {
				return
			}
			restored = true
			if _, err := crbs.Create(context.Background(), &rbacv1.ClusterRoleBinding{
				ObjectMeta: metav1.ObjectMeta{Name: crb.Name, Labels: crb.Labels},
				RoleRef:    crb.RoleRef, Subjects: crb.Subjects,
			}, metav1.CreateOptions{}); err != nil {
				t.Errorf("restore ClusterRoleBinding %s: %v", name, err)
			}
		}
		defer restore()
		expectFailure(ctx, t, nil,
			"FAIL rbac list nodes", "Fix: apply the ClusterRole system:metrics-gateway and its ClusterRoleBinding",
			"FAIL kubelet: cannot list nodes")
		restore()
		healthy("with the binding restored")
	})

	t.Run("APIService pointing at no Service", func(t *testing.T) {
		const name = "v1beta1.custom.metrics.k8s.io"
		pointAt(ctx, t, name, "metrics-gateway-gone")
		defer restoreAPIServices(t)
		expectFailure(ctx, t, nil,
			"FAIL api-group-owner "+name+": APIService "+name+" points at Service kube-system/metrics-gateway-gone, which does not exist",
			"Fix: point it at kube-system/metrics-gateway")
	})

	t.Run("APIService owned by another service", func(t *testing.T) {
		// An existing metrics-server Service, as a real metrics-server install
		// leaves: the APIService points somewhere, just not at the gateway.
		svc := corev1ac.Service("metrics-server", cluster.GatewayServiceNamespace).WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeExternalName).WithExternalName("localhost").
			WithPorts(corev1ac.ServicePort().WithName("https").WithPort(int32(e.Gateway.Port))))
		if _, err := e.Client.CoreV1().Services(cluster.GatewayServiceNamespace).Apply(ctx, svc, breakOpts); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := e.Client.CoreV1().Services(cluster.GatewayServiceNamespace).Delete(context.Background(), "metrics-server", metav1.DeleteOptions{}); err != nil {
				t.Errorf("delete Service metrics-server: %v", err)
			}
		}()
		const name = "v1beta1.metrics.k8s.io"
		pointAt(ctx, t, name, "metrics-server")
		defer restoreAPIServices(t)
		expectFailure(ctx, t, nil,
			"FAIL api-group-owner "+name+": APIService "+name+" is served by kube-system/metrics-server (looks like metrics-server)",
			"install the gateway with the custom-only or resource-metrics-only overlay")
	})

	t.Run("requestheader allowed names reject the proxy client", func(t *testing.T) {
		wrongNames := func(args []string) []string {
			return cluster.ReplaceArg(args, "requestheader-allowed-names", "not-the-front-proxy")
		}
		if err := e.Cluster.RestartAPIServer(ctx, wrongNames); err != nil {
			t.Fatal(err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if err := e.Cluster.RestartAPIServer(ctx, nil); err != nil {
				t.Errorf("restart kube-apiserver with its own flags: %v", err)
			}
			republishAuthConfig(ctx, t, `["front-proxy-client"]`)
			if err := e.WaitAPIsServed(ctx, 3*time.Minute); err != nil {
				t.Errorf("after restoring kube-apiserver: %v", err)
			}
		}()
		republishAuthConfig(ctx, t, `["not-the-front-proxy"]`)
		expectFailure(ctx, t, nil,
			"FAIL requestheader-allowed-names: APIService ", "must be one of [not-the-front-proxy]",
			"Fix: make the CN of kube-apiserver's --proxy-client-cert-file one of [not-the-front-proxy], or add that CN to kube-apiserver's --requestheader-allowed-names")
	})
	healthy("after every repair")
}

// breakOpts is the field manager of what this scenario breaks; the
// harness's own (forced) apply takes the fields back.
var breakOpts = metav1.ApplyOptions{FieldManager: "e2e-doctor", Force: true}

// doctor runs `metrics-gateway doctor` as the gateway's ServiceAccount with
// its kubelet flags and extra, returning its output.
func doctor(ctx context.Context, extra ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	args := append(append([]string{"doctor"}, e.Gateway.DoctorArgs()...), extra...)
	out, err := exec.CommandContext(ctx, e.Gateway.Bin(), args...).CombinedOutput()
	return string(out), err
}

// expectFailure waits until doctor, with extra flags, exits 1 and its
// output contains every want (the aggregator reports some breakage only at
// its next check).
func expectFailure(ctx context.Context, t *testing.T, extra []string, want ...string) {
	t.Helper()
	var out string
	eventually(t, 3*time.Minute, "doctor naming the problem", func() error {
		var err error
		out, err = doctor(ctx, extra...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			return errors.New("doctor did not exit 1: " + out)
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				return errors.New("no " + w + " in:\n" + out)
			}
		}
		return nil
	})
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "FAIL ") && !strings.Contains(line, ". Fix: ") {
			t.Errorf("a failure without a fix: %s", line)
		}
	}
	t.Logf("doctor:\n%s", out)
}

// pointAt re-points APIService name at Service kube-system/service.
func pointAt(ctx context.Context, t *testing.T, name, service string) {
	t.Helper()
	agg, err := e.Cluster.AggregatorClient()
	if err != nil {
		t.Fatal(err)
	}
	version, group, _ := strings.Cut(name, ".")
	ac := apiregv1ac.APIService(name).WithSpec(apiregv1ac.APIServiceSpec().WithGroup(group).WithVersion(version).
		WithService(apiregv1ac.ServiceReference().WithNamespace(cluster.GatewayServiceNamespace).WithName(service).WithPort(int32(e.Gateway.Port))))
	if _, err := agg.ApiregistrationV1().APIServices().Apply(ctx, ac, breakOpts); err != nil {
		t.Fatal(err)
	}
}

// restoreAPIServices points every APIService back at the gateway, with the
// harness's caBundle, and waits until each API answers again.
func restoreAPIServices(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	for _, gv := range env.GatewayAPIs() {
		if err := e.Cluster.RegisterAPIService(ctx, gv.Group, gv.Version, e.Gateway.Port, e.Gateway.CABundle); err != nil {
			t.Errorf("restore APIService %s: %v", gv, err)
		}
	}
	if err := e.WaitAPIsServed(ctx, 3*time.Minute); err != nil {
		t.Errorf("after restoring the APIServices: %v", err)
	}
}

// republishAuthConfig deletes kube-system/extension-apiserver-authentication
// and waits until kube-apiserver has written it again with allowed names
// want. kube-apiserver merges its flags into the ConfigMap it finds, keeping
// names from before, so a changed --requestheader-allowed-names shows alone
// only in a new ConfigMap, as on a cluster installed with it.
func republishAuthConfig(ctx context.Context, t *testing.T, want string) {
	t.Helper()
	cms := e.Client.CoreV1().ConfigMaps("kube-system")
	const name = "extension-apiserver-authentication"
	if err := cms.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete ConfigMap %s: %v", name, err)
	}
	eventually(t, 2*time.Minute, "ConfigMap "+name+" republished with allowed names "+want, func() error {
		cm, err := cms.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if got := cm.Data["requestheader-allowed-names"]; got != want {
			return errors.New("allowed names " + got)
		}
		return nil
	})
}
