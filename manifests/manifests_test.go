package manifests

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// checkAll runs every check that holds for any rendering of these manifests.
func checkAll(r *rendering, dir string) []error {
	errs := checkNoTLSShortcuts(r.objs)
	errs = append(errs, checkRBAC(r)...)
	errs = append(errs, checkAPIServices(r)...)
	d := r.deployments[namespace+"/"+gatewayName]
	if d == nil || len(r.deployments) != 1 {
		return append(errs, fmt.Errorf("want one Deployment %s/%s, have %v", namespace, gatewayName, sortedKeys(r.deployments)))
	}
	errs = append(errs, checkDeployment(r, d, dir)...)
	errs = append(errs, checkServiceAndPDB(r, d)...)
	if o, err := gatewayOptions(d.Spec.Template.Spec.Containers[0].Args); err == nil {
		errs = append(errs, checkServingCert(r, d, o)...)
		errs = append(errs, checkKubeletAccount(r, o)...)
	}
	return errs
}

func checkServiceAndPDB(r *rendering, d *appsv1.Deployment) []error {
	var errs []error
	pods := labels.Set(d.Spec.Template.Labels)
	if svc := r.services[namespace+"/"+gatewayName]; svc == nil {
		errs = append(errs, errors.New("no Service"))
	} else {
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(pods) || len(svc.Spec.Selector) == 0 {
			errs = append(errs, fmt.Errorf("Service selector %v does not select the pods", svc.Spec.Selector))
		}
		for _, p := range svc.Spec.Ports {
			if containerPort(&d.Spec.Template.Spec.Containers[0], p.TargetPort.String()) == nil {
				errs = append(errs, fmt.Errorf("Service port %d: no container port %s", p.Port, p.TargetPort.String()))
			}
		}
	}
	replicas := int32(1)
	if d.Spec.Replicas != nil {
		replicas = *d.Spec.Replicas
	}
	for k, pdb := range r.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(pods) {
			errs = append(errs, fmt.Errorf("PodDisruptionBudget %s does not select the pods", k))
		}
		if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() >= int(replicas) {
			errs = append(errs, fmt.Errorf("PodDisruptionBudget %s: minAvailable must stay below the %d replicas, or no node drains", k, replicas))
		}
	}
	return errs
}

func renderAndCheck(t *testing.T, dir string) *rendering {
	t.Helper()
	objs, err := render(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := newRendering(objs)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range checkAll(r, t.TempDir()) {
		t.Error(e)
	}
	return r
}

var (
	allAPIServices    = []string{"v1.metrics.k8s.io", "v1beta1.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io", "v1beta1.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io"}
	customAPIServices = []string{"v1beta1.custom.metrics.k8s.io", "v1beta1.external.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io"}
	baseKinds         = map[string]int{"APIService": 5, "ClusterRole": 6, "ClusterRoleBinding": 5, "ConfigMap": 1, "Deployment": 1, "Role": 2, "RoleBinding": 3, "Secret": 1, "Service": 1, "ServiceAccount": 2}
)

// with returns baseKinds changed by delta.
func with(delta map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range baseKinds {
		out[k] = v
	}
	for k, v := range delta {
		if out[k] += v; out[k] == 0 {
			delete(out, k)
		}
	}
	return out
}

func TestOverlays(t *testing.T) {
	for _, tc := range []struct {
		dir         string
		apiServices []string
		kinds       map[string]int
		check       func(t *testing.T, r *rendering, d *appsv1.Deployment)
	}{
		{"base", allAPIServices, baseKinds, func(t *testing.T, r *rendering, d *appsv1.Deployment) {
			wantReplicas(t, d, 1)
			if v := storageVolume(d); v == nil || v.EmptyDir == nil {
				t.Errorf("storage is not an emptyDir: %+v", v)
			}
			if s := d.Spec.Strategy; s.Type != appsv1.RollingUpdateDeploymentStrategyType || s.RollingUpdate == nil || s.RollingUpdate.MaxUnavailable.IntValue() != 0 {
				t.Errorf("strategy %+v: want a rolling update that keeps the old pod until the new one is ready", s)
			}
			wantPodsJob(t, r, d, true)
		}},
		{"overlays/ha", allAPIServices, with(map[string]int{"PodDisruptionBudget": 1}), func(t *testing.T, r *rendering, d *appsv1.Deployment) {
			wantReplicas(t, d, 2)
			a := d.Spec.Template.Spec.Affinity
			if a == nil || a.PodAntiAffinity == nil || len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 || len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 0 {
				t.Fatalf("want one preferred pod anti-affinity term, have %+v", a)
			}
			term := a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
			sel, err := metav1.LabelSelectorAsSelector(term.LabelSelector)
			if term.TopologyKey != corev1.LabelHostname || err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Errorf("anti-affinity term %+v: want the gateway's pods per kubernetes.io/hostname", term)
			}
			if pdb := r.pdbs[namespace+"/"+gatewayName]; pdb == nil || pdb.Spec.MinAvailable.IntValue() != 1 {
				t.Errorf("want PodDisruptionBudget minAvailable 1")
			}
		}},
		{"overlays/pvc", allAPIServices, with(map[string]int{"PersistentVolumeClaim": 1}), func(t *testing.T, r *rendering, d *appsv1.Deployment) {
			v := storageVolume(d)
			if v == nil || v.PersistentVolumeClaim == nil || v.EmptyDir != nil {
				t.Fatalf("storage volume %+v: want only a claim", v)
			}
			pvc := r.pvcs[namespace+"/"+v.PersistentVolumeClaim.ClaimName]
			if size := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; size.String() != "10Gi" || !slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
				t.Errorf("claim %s %v: want 10Gi ReadWriteOnce", size.String(), pvc.Spec.AccessModes)
			}
			if d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || d.Spec.Strategy.RollingUpdate != nil {
				t.Errorf("strategy %+v: want Recreate (one ReadWriteOnce volume)", d.Spec.Strategy)
			}
		}},
		{"overlays/resource-metrics-only", []string{"v1.metrics.k8s.io", "v1beta1.metrics.k8s.io"}, with(map[string]int{"APIService": -3, "ClusterRole": -1, "ClusterRoleBinding": -1}), func(t *testing.T, r *rendering, d *appsv1.Deployment) {
			wantPodsJob(t, r, d, false)
			var granted []string
			for _, rule := range r.clusterRoles["system:metrics-gateway"].Rules {
				for _, res := range rule.Resources {
					granted = append(granted, res+":"+strings.Join(rule.Verbs, ","))
				}
			}
			slices.Sort(granted)
			// metrics-server v0.9.0's system:metrics-server, less
			// nodes/metrics, which the kubelet ServiceAccount holds.
			if want := []string{"nodes:get,list,watch", "pods:get,list,watch"}; !slices.Equal(granted, want) {
				t.Errorf("system:metrics-gateway grants %v, want metrics-server's %v without nodes/metrics", granted, want)
			}
			if r.clusterRoles["metrics-gateway:custom-metrics-reader"] != nil || r.clusterBindings["metrics-gateway:hpa-controller-custom-metrics"] != nil {
				t.Error("the custom metrics reader is left")
			}
		}},
		{"overlays/custom-only", customAPIServices, with(map[string]int{"APIService": -2, "ClusterRole": -1}), func(t *testing.T, r *rendering, d *appsv1.Deployment) {
			wantPodsJob(t, r, d, true)
			if r.clusterRoles["system:metrics-gateway:aggregated-metrics-reader"] != nil {
				t.Error("the metrics.k8s.io reader is left beside metrics-server's")
			}
		}},
		{"overlays/own-certs", allAPIServices, with(map[string]int{"ClusterRole": -1, "ClusterRoleBinding": -1, "Role": -1, "RoleBinding": -1, "Secret": -1}), func(t *testing.T, r *rendering, d *appsv1.Deployment) {
			base, err := render("base")
			if err != nil {
				t.Fatal(err)
			}
			br, err := newRendering(base)
			if err != nil {
				t.Fatal(err)
			}
			baseArgs := br.deployments[namespace+"/"+gatewayName].Spec.Template.Spec.Containers[0].Args
			want := append(slices.Clone(baseArgs), "--tls-cert-file=/etc/metrics-gateway-tls/tls.crt", "--tls-private-key-file=/etc/metrics-gateway-tls/tls.key", "--manage-serving-cert=false")
			if got := d.Spec.Template.Spec.Containers[0].Args; !slices.Equal(got, want) {
				t.Errorf("args %q,\nwant the base's and the certificate files %q", got, want)
			}
			for name, a := range r.apiServices {
				if v := a.Annotations["cert-manager.io/inject-ca-from"]; v != namespace+"/"+ownTLSSecret {
					t.Errorf("APIService %s: inject-ca-from %q", name, v)
				}
			}
		}},
		{"overlays/scale-out", allAPIServices, with(map[string]int{"Deployment": -1, "StatefulSet": 1}), func(t *testing.T, r *rendering, d *appsv1.Deployment) {
			wantReplicas(t, d, 2)
			sts := r.statefulSets[namespace+"/"+gatewayName]
			if sts == nil || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement || sts.Spec.ServiceName != gatewayName {
				t.Fatalf("want a StatefulSet with Parallel pod management governed by Service %s", gatewayName)
			}
			if !slices.Contains(d.Spec.Template.Spec.Containers[0].Args, "--shards=2") {
				t.Errorf("args %q: want --shards=2, as many as the replicas", d.Spec.Template.Spec.Containers[0].Args)
			}
			if v := storageVolume(d); v == nil || v.PersistentVolumeClaim == nil {
				t.Errorf("storage %+v: want the claim template's volume (the WAL remote write replays)", v)
			}
			if p := d.Spec.Template.Spec.Containers[0].ReadinessProbe; p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/readyz?exclude=query-backend" {
				t.Errorf("readiness probe %+v: want /readyz without the engine's check", p)
			}
			cfg, err := gatewayConfig(r, d, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if rw, err := cfg.RemoteWriteConfig("metrics-gateway-0"); err != nil || rw == nil || len(rw.RemoteWriteConfigs) != 2 {
				t.Errorf("remoteWrite: %v %v, want two endpoints", rw, err)
			}
			if b, err := cfg.Backend(); err != nil || b == nil {
				t.Errorf("queryBackend: %v %v", b, err)
			}
		}},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			r := renderAndCheck(t, tc.dir)
			if got := r.apiServiceNames(); !slices.Equal(got, tc.apiServices) {
				t.Errorf("APIServices %v, want %v", got, tc.apiServices)
			}
			if got := r.kinds(); fmt.Sprint(got) != fmt.Sprint(tc.kinds) {
				t.Errorf("kinds %v, want %v", got, tc.kinds)
			}
			if d := r.deployments[namespace+"/"+gatewayName]; d != nil {
				tc.check(t, r, d)
			}
		})
	}
}

// TestOverlaysCoverComponents: each component has its overlay, so that
// TestOverlays and kubectl see every one.
func TestOverlaysCoverComponents(t *testing.T) {
	components, err := filepath.Glob("components/*/kustomization.yaml")
	if err != nil || len(components) == 0 {
		t.Fatalf("no components: %v", err)
	}
	for _, c := range components {
		name := filepath.Base(filepath.Dir(c))
		if _, err := os.Stat(filepath.Join("overlays", name, "kustomization.yaml")); err != nil {
			t.Errorf("component %s has no overlay: %v", name, err)
		}
	}
}

// compositions are components used together: target patches make the order
// irrelevant. ha and pvc do not combine (one ReadWriteOnce claim).
var compositions = [][]string{
	{"own-certs", "resource-metrics-only", "pvc"},
	{"pvc", "resource-metrics-only", "own-certs"},
	{"custom-only", "ha", "own-certs"},
	{"own-certs", "ha", "custom-only"},
}

// composition writes a kustomization of base and components into a new
// directory and returns it.
func composition(t *testing.T, components []string) string {
	t.Helper()
	dir := t.TempDir()
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	rel, err := filepath.Rel(dir, here)
	if err != nil {
		t.Fatal(err)
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- " + filepath.Join(rel, "base") + "\ncomponents:\n"
	for _, c := range components {
		k += "- " + filepath.Join(rel, "components", c) + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestCompositions(t *testing.T) {
	rendered := map[string][]object{}
	for _, cs := range compositions {
		t.Run(strings.Join(cs, "+"), func(t *testing.T) {
			r := renderAndCheck(t, composition(t, cs))
			sorted := slices.Sorted(slices.Values(cs))
			k := strings.Join(sorted, "+")
			// Arguments appended by components come in component order;
			// the gateway does not care.
			objs := sortedArgs(r.objs)
			if prev, ok := rendered[k]; ok {
				if diff := diffObjects(objs, prev); len(diff) > 0 {
					t.Errorf("the order of components changes the result:\n%s", strings.Join(diff, "\n"))
				}
			}
			rendered[k] = objs
		})
	}
}

// sortedArgs copies objs with every container's args sorted.
func sortedArgs(objs []object) []object {
	out := make([]object, len(objs))
	for i, o := range objs {
		o = deepCopy(o)
		containers, _ := get(o, "spec", "template", "spec", "containers").([]any)
		for _, c := range containers {
			if args, ok := get(c, "args").([]any); ok {
				slices.SortFunc(args, func(a, b any) int { return strings.Compare(fmt.Sprint(a), fmt.Sprint(b)) })
			}
		}
		out[i] = o
	}
	return out
}

// TestRenderMatchesKubectl holds render to kustomize itself, with the kubectl
// that make e2e-build puts in test/bin (KUBECTL overrides it). On a machine
// without it the test is skipped; the checks above still run on render.
func TestRenderMatchesKubectl(t *testing.T) {
	kubectl := os.Getenv("KUBECTL")
	if kubectl == "" {
		kubectl = filepath.Join("..", "test", "bin", "kubectl")
	}
	if _, err := os.Stat(kubectl); err != nil {
		t.Skipf("no kubectl at %s (make e2e-build builds it): %v", kubectl, err)
	}
	dirs := map[string]string{"base": "base"}
	overlays, _ := filepath.Glob("overlays/*")
	for _, o := range overlays {
		dirs[o] = o
	}
	for _, cs := range compositions {
		dirs[strings.Join(cs, "+")] = composition(t, cs)
	}
	for _, name := range sortedKeys(dirs) {
		dir := dirs[name]
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command(kubectl, "kustomize", dir).Output()
			if err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) {
					t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, ee.Stderr)
				}
				t.Fatal(err)
			}
			want, err := decodeObjects(out)
			if err != nil {
				t.Fatal(err)
			}
			got, err := render(dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range diffObjects(got, want) {
				t.Error(d)
			}
		})
	}
}

func wantReplicas(t *testing.T, d *appsv1.Deployment, n int32) {
	t.Helper()
	if d.Spec.Replicas == nil || *d.Spec.Replicas != n {
		t.Errorf("replicas %v, want %d", d.Spec.Replicas, n)
	}
}

func storageVolume(d *appsv1.Deployment) *corev1.Volume {
	v, _ := volumeAt(&d.Spec.Template.Spec, &d.Spec.Template.Spec.Containers[0], "/var/lib/metrics-gateway")
	return v
}

func wantPodsJob(t *testing.T, r *rendering, d *appsv1.Deployment, enabled bool) {
	t.Helper()
	cfg, err := gatewayConfig(r, d, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if got := *cfg.Pods.Enabled; got != enabled {
		t.Errorf("pods.enabled %v, want %v", got, enabled)
	}
}
