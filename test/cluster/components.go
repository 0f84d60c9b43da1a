package cluster

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Component names: the log file is Dir/logs/<name>.log and Dir/pids uses the same names.
const (
	etcdComponent      = "etcd"
	apiserverComponent = "kube-apiserver"
	kcmComponent       = "kube-controller-manager"
	schedComponent     = "kube-scheduler"
)

// DefaultControllers is what the harness enables in kube-controller-manager: enough for
// Deployments, HPAs and namespace clean-up, nothing that needs nodes or a cloud. Names
// are v1.37's (`kube-controller-manager --help`, --controllers).
//
// clusterrole-aggregation-controller is here so system:aggregated-metrics-reader really
// flows into view/edit/admin, and root-ca-certificate-publisher-controller because every
// pod's projected service-account volume refers to the kube-root-ca.crt ConfigMap.
var DefaultControllers = []string{
	"deployment-controller",
	"replicaset-controller",
	"horizontal-pod-autoscaler-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"garbage-collector-controller",
	"namespace-controller",
	"clusterrole-aggregation-controller",
	"root-ca-certificate-publisher-controller",
}

// Ports are the loopback ports chosen at Start.
type Ports struct {
	EtcdClient        int `json:"etcdClient"`
	EtcdPeer          int `json:"etcdPeer"`
	APIServer         int `json:"apiServer"`
	ControllerManager int `json:"controllerManager"`
	Scheduler         int `json:"scheduler"`
}

// layout names every file under Options.Dir.
type layout struct{ dir string }

func (l layout) pkiDir() string                { return filepath.Join(l.dir, "pki") }
func (l layout) pki(file string) string        { return filepath.Join(l.dir, "pki", file) }
func (l layout) etcdData() string              { return filepath.Join(l.dir, "etcd") }
func (l layout) logDir() string                { return filepath.Join(l.dir, "logs") }
func (l layout) log(name string) string        { return filepath.Join(l.dir, "logs", name+".log") }
func (l layout) kubeconfig(name string) string { return filepath.Join(l.dir, name+".kubeconfig") }
func (l layout) pidsFile() string              { return filepath.Join(l.dir, "pids") }
func (l layout) stateFile() string             { return filepath.Join(l.dir, "cluster.json") }

func etcdArgs(l layout, p Ports) []string {
	client := fmt.Sprintf("http://127.0.0.1:%d", p.EtcdClient)
	peer := fmt.Sprintf("http://127.0.0.1:%d", p.EtcdPeer)
	return []string{
		"--name=default",
		"--data-dir=" + l.etcdData(),
		"--listen-client-urls=" + client,
		"--advertise-client-urls=" + client,
		"--listen-peer-urls=" + peer,
		"--initial-advertise-peer-urls=" + peer,
		"--initial-cluster=default=" + peer,
	}
}

func apiserverArgs(l layout, p Ports) []string {
	return []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", p.EtcdClient),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", p.APIServer),
		"--service-cluster-ip-range=" + serviceCIDR,
		"--client-ca-file=" + l.pki(caName+".crt"),
		"--tls-cert-file=" + l.pki(apiserverName+".crt"),
		"--tls-private-key-file=" + l.pki(apiserverName+".key"),
		"--service-account-key-file=" + l.pki(serviceAccountKeyName+".pub"),
		"--service-account-signing-key-file=" + l.pki(serviceAccountKeyName+".key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		// The endpoint reconciler refuses a loopback advertise address; nothing here
		// reaches the apiserver through the kubernetes Service anyway (no kube-proxy).
		"--endpoint-reconciler-type=none",
		// The aggregation layer exactly as kubeadm configures it, so the gateway sees the
		// same front-proxy identity headers and CA as in a real cluster.
		"--requestheader-client-ca-file=" + l.pki(frontProxyCAName+".crt"),
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--proxy-client-cert-file=" + l.pki(frontProxyClientName+".crt"),
		"--proxy-client-key-file=" + l.pki(frontProxyClientName+".key"),
		// Real clusters run with true. Here it must be false: with routing on, the
		// aggregator resolves APIServices through EndpointSlices, which refuse loopback
		// addresses, and it rejects ExternalName services outright. With it off, the
		// aggregator dials the Service itself, and an ExternalName "localhost" Service
		// reaches a gateway on this host through the full front-proxy chain.
		"--enable-aggregator-routing=false",
	}
}

func controllerManagerArgs(l layout, p Ports, o Options) []string {
	kubeconfig := l.kubeconfig(kcmComponent)
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", p.ControllerManager),
		"--tls-cert-file=" + l.pki(kcmServingName+".crt"),
		"--tls-private-key-file=" + l.pki(kcmServingName+".key"),
		"--client-ca-file=" + l.pki(caName+".crt"),
		"--controllers=" + strings.Join(o.Controllers, ","),
		"--service-account-private-key-file=" + l.pki(serviceAccountKeyName+".key"),
		"--root-ca-file=" + l.pki(caName+".crt"),
		// Each controller acts as its own service account (kube-system/<controller>), as
		// kubeadm sets it up. With false every controller would act as
		// system:kube-controller-manager, whose bootstrap ClusterRole cannot even create
		// ReplicaSets; with true the HPA controller reads metrics.k8s.io as
		// system:serviceaccount:kube-system:horizontal-pod-autoscaler, exactly as in a
		// real cluster.
		"--use-service-account-credentials=true",
		"--leader-elect=false",
		"--horizontal-pod-autoscaler-sync-period=" + o.HPASyncPeriod.String(),
		"--horizontal-pod-autoscaler-downscale-stabilization=" + o.HPADownscaleStabilization.String(),
		"--horizontal-pod-autoscaler-initial-readiness-delay=" + o.HPAInitialReadinessDelay.String(),
		"--horizontal-pod-autoscaler-cpu-initialization-period=" + o.HPACPUInitializationPeriod.String(),
	}
}

func schedulerArgs(l layout, p Ports) []string {
	kubeconfig := l.kubeconfig(schedComponent)
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", p.Scheduler),
		"--tls-cert-file=" + l.pki(schedulerServingName+".crt"),
		"--tls-private-key-file=" + l.pki(schedulerServingName+".key"),
		"--client-ca-file=" + l.pki(caName+".crt"),
		"--leader-elect=false",
	}
}
