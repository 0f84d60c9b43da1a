package manifests

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/units"
	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/server"
)

const (
	wantImage = "ghcr.io/metrics-gateway/metrics-gateway:v0.1.0"
	// The distroless nonroot user the image runs as.
	nonrootID = 65532
)

// checkDeployment checks the gateway's Deployment in r: the pod is hardened,
// sized and probed, its arguments are flags the gateway has and pass its own
// validation with the mounted config file, and every path it writes is on a
// writable volume. configDir receives the config file.
func checkDeployment(r *rendering, d *appsv1.Deployment, configDir string) []error {
	errs := checkPod(r, d)
	for i := range d.Spec.Template.Spec.Containers {
		c := &d.Spec.Template.Spec.Containers[i]
		var cerrs []error
		cerrs = append(cerrs, checkContainerSecurity(&d.Spec.Template.Spec, c)...)
		cerrs = append(cerrs, checkResources(c)...)
		o, argErrs := checkArgs(r, &d.Spec.Template.Spec, c, configDir)
		cerrs = append(cerrs, argErrs...)
		if o != nil {
			cerrs = append(cerrs, checkProbes(c, o)...)
			cerrs = append(cerrs, checkRetentionSize(d, o)...)
			if g := d.Spec.Template.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second < o.GenericServerRunOptions.RequestTimeout+10*time.Second {
				cerrs = append(cerrs, fmt.Errorf("terminationGracePeriodSeconds %v: shutdown drains for up to --request-timeout (%v), then closes the TSDB; give it 10s more", g, o.GenericServerRunOptions.RequestTimeout))
			}
			if cfg, err := gatewayConfig(r, d, configDir); err == nil {
				cerrs = append(cerrs, checkMemoryBudget(c, o, cfg)...)
			}
		}
		if c.Image != wantImage {
			cerrs = append(cerrs, fmt.Errorf("image %s, want %s", c.Image, wantImage))
		}
		for _, e := range cerrs {
			errs = append(errs, fmt.Errorf("container %s: %w", c.Name, e))
		}
	}
	if len(d.Spec.Template.Spec.InitContainers) > 0 {
		errs = append(errs, errors.New("init containers: none expected"))
	}
	for i, e := range errs {
		errs[i] = fmt.Errorf("Deployment %s/%s: %w", d.Namespace, d.Name, e)
	}
	return errs
}

func checkPod(r *rendering, d *appsv1.Deployment) []error {
	var errs []error
	p := &d.Spec.Template.Spec
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		errs = append(errs, fmt.Errorf("selector %v does not match the pod labels %v", d.Spec.Selector, d.Spec.Template.Labels))
	}
	if p.HostNetwork || p.HostPID || p.HostIPC {
		errs = append(errs, errors.New("shares a host namespace"))
	}
	if p.PriorityClassName != "system-cluster-critical" {
		errs = append(errs, fmt.Errorf("priorityClassName %q", p.PriorityClassName))
	}
	if p.AutomountServiceAccountToken == nil || !*p.AutomountServiceAccountToken {
		errs = append(errs, errors.New("automountServiceAccountToken must be true: the in-cluster credentials"))
	}
	if r.serviceAccounts[d.Namespace+"/"+p.ServiceAccountName] == nil {
		errs = append(errs, fmt.Errorf("no ServiceAccount %q", p.ServiceAccountName))
	}
	if p.NodeSelector[corev1.LabelOSStable] != "linux" {
		errs = append(errs, errors.New("nodeSelector kubernetes.io/os: linux missing"))
	}
	if sc := p.SecurityContext; sc == nil || sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		errs = append(errs, errors.New("pod seccompProfile is not RuntimeDefault"))
	}
	// Replicas agree only when they scrape at the same offsets, which
	// Prometheus derives from the hostname; the gateway then names its own
	// metrics by POD_NAME.
	// A StatefulSet's pods have their names as hostnames, whatever the
	// template says.
	if p.Hostname == "" && r.statefulSets[d.Namespace+"/"+d.Name] == nil {
		errs = append(errs, errors.New("no hostname shared by every replica: each scrapes at its own offsets"))
	}
	for _, c := range p.Containers {
		podName := false
		for _, e := range c.Env {
			podName = podName || (e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name")
		}
		if !podName {
			errs = append(errs, fmt.Errorf("container %s: no POD_NAME from metadata.name", c.Name))
		}
	}
	for _, v := range p.Volumes {
		switch {
		case v.HostPath != nil:
			errs = append(errs, fmt.Errorf("volume %s: hostPath", v.Name))
		case v.ConfigMap != nil && r.configMaps[d.Namespace+"/"+v.ConfigMap.Name] == nil:
			errs = append(errs, fmt.Errorf("volume %s: no ConfigMap %s", v.Name, v.ConfigMap.Name))
		case v.PersistentVolumeClaim != nil && r.pvcs[d.Namespace+"/"+v.PersistentVolumeClaim.ClaimName] == nil:
			errs = append(errs, fmt.Errorf("volume %s: no PersistentVolumeClaim %s", v.Name, v.PersistentVolumeClaim.ClaimName))
		case v.Secret != nil && v.Secret.SecretName != ownTLSSecret:
			errs = append(errs, fmt.Errorf("volume %s: unexpected Secret %s", v.Name, v.Secret.SecretName))
		}
	}
	return errs
}

// checkContainerSecurity checks the effective security context: the
// container's settings, else the pod's.
func checkContainerSecurity(p *corev1.PodSpec, c *corev1.Container) []error {
	var errs []error
	psc, csc := p.SecurityContext, c.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if csc == nil {
		return []error{errors.New("no securityContext")}
	}
	pick := func(c, p *int64) *int64 {
		if c != nil {
			return c
		}
		return p
	}
	nonRoot := csc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = psc.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		errs = append(errs, errors.New("runAsNonRoot is not true"))
	}
	if v := pick(csc.RunAsUser, psc.RunAsUser); v == nil || *v != nonrootID {
		errs = append(errs, fmt.Errorf("runAsUser is not %d", nonrootID))
	}
	if v := pick(csc.RunAsGroup, psc.RunAsGroup); v == nil || *v != nonrootID {
		errs = append(errs, fmt.Errorf("runAsGroup is not %d", nonrootID))
	}
	if v := csc.ReadOnlyRootFilesystem; v == nil || !*v {
		errs = append(errs, errors.New("readOnlyRootFilesystem is not true"))
	}
	if v := csc.AllowPrivilegeEscalation; v == nil || *v {
		errs = append(errs, errors.New("allowPrivilegeEscalation is not false"))
	}
	if v := csc.Privileged; v != nil && *v {
		errs = append(errs, errors.New("privileged"))
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0 {
		errs = append(errs, errors.New("capabilities: must drop ALL and add none"))
	}
	if s := csc.SeccompProfile; s != nil && s.Type != corev1.SeccompProfileTypeRuntimeDefault {
		errs = append(errs, fmt.Errorf("seccompProfile %s", s.Type))
	}
	return errs
}

// checkResources: requests for the scheduler, a memory limit, no CPU limit
// (scrape bursts would be throttled), and GOMEMLIMIT below the memory limit.
func checkResources(c *corev1.Container) []error {
	var errs []error
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() {
		errs = append(errs, errors.New("cpu and memory requests must be set"))
	}
	if !lim.Cpu().IsZero() {
		errs = append(errs, errors.New("cpu limit set: scrape bursts would be throttled"))
	}
	memLimit := lim.Memory()
	if memLimit.IsZero() {
		return append(errs, errors.New("no memory limit"))
	}
	if req.Memory().Cmp(*memLimit) > 0 {
		errs = append(errs, errors.New("memory request above the limit"))
	}
	for _, e := range c.Env {
		if e.Name != "GOMEMLIMIT" {
			continue
		}
		n, err := parseGoMemLimit(e.Value)
		if err != nil {
			errs = append(errs, err)
		} else if n >= memLimit.Value() {
			errs = append(errs, fmt.Errorf("GOMEMLIMIT %s is not below the memory limit %s", e.Value, memLimit))
		}
	}
	return errs
}

// checkRetentionSize: an emptyDir for the TSDB has a sizeLimit (a full
// node disk would evict every pod on it), and --storage-retention-size keeps
// the TSDB under it, with room for a block being compacted, since past the
// limit the kubelet evicts the gateway.
func checkRetentionSize(d *appsv1.Deployment, o *server.Options) []error {
	v := storageVolume(d)
	if v == nil || v.EmptyDir == nil {
		return nil
	}
	if v.EmptyDir.SizeLimit == nil {
		return []error{errors.New("the storage emptyDir has no sizeLimit")}
	}
	limit := v.EmptyDir.SizeLimit.Value()
	b, err := units.ParseBase2Bytes(o.StorageRetentionSize)
	if err != nil || b <= 0 || float64(b) > 0.8*float64(limit) {
		return []error{fmt.Errorf("--storage-retention-size %q must be set and at most 80%% of the storage emptyDir's sizeLimit %s", o.StorageRetentionSize, v.EmptyDir.SizeLimit)}
	}
	return nil
}

// checkMemoryBudget: the most the gateway's options and config file let it
// hold stays under the soft memory limit it runs with (GOMEMLIMIT, or
// --auto-gomemlimit's share of the memory limit), so no default can run the
// pod out of memory.
func checkMemoryBudget(c *corev1.Container, o *server.Options, cfg *scrape.GatewayConfig) []error {
	limit := float64(c.Resources.Limits.Memory().Value())
	soft, source := limit*o.Memory.Ratio, fmt.Sprintf("--auto-gomemlimit-ratio %v of the memory limit", o.Memory.Ratio)
	if !o.Memory.AutoGoMemLimit {
		soft, source = limit, "the memory limit (--auto-gomemlimit=false)"
	}
	for _, e := range c.Env {
		if e.Name == "GOMEMLIMIT" {
			if n, err := parseGoMemLimit(e.Value); err == nil {
				soft, source = float64(n), "GOMEMLIMIT"
			}
		}
	}
	if b := o.MemoryBudget(cfg.Storage.MaxHeadSeries); float64(b) > soft {
		return []error{fmt.Errorf("memory budget %d MiB (storage.maxHeadSeries %d, --query-max-samples %d, query API concurrency %d, --pod-scrape-max-bytes-in-flight %s) is above %s, %.0f MiB",
			b>>20, cfg.Storage.MaxHeadSeries, o.QueryMaxSamples, o.QueryAPI.MaxConcurrent, o.PodScrapeMaxBytesInFlight, source, soft/(1<<20))}
	}
	return nil
}

// parseGoMemLimit reads GOMEMLIMIT as the Go runtime does: bytes, with an
// optional B, KiB, MiB, GiB or TiB suffix.
func parseGoMemLimit(s string) (int64, error) {
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = n, u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("GOMEMLIMIT %q: %w", s, err)
	}
	return n * mult, nil
}

// checkArgs parses the arguments with the gateway's own flag set, then runs
// the gateway's own validation with the config file the pod mounts.
func checkArgs(r *rendering, p *corev1.PodSpec, c *corev1.Container, configDir string) (*server.Options, []error) {
	if len(c.Command) > 0 {
		return nil, []error{errors.New("command overrides the image's entrypoint")}
	}
	o, err := gatewayOptions(c.Args)
	if err != nil {
		return nil, []error{err}
	}
	var errs []error
	if o.Kubeconfig != "" {
		errs = append(errs, errors.New("--kubeconfig: in a cluster the gateway uses its ServiceAccount"))
	}
	certFile := o.SecureServing.ServerCert.CertKey.CertFile
	keyFile := o.SecureServing.ServerCert.CertKey.KeyFile
	writable := []string{o.StoragePath}
	if certFile == "" {
		writable = append(writable, o.SecureServing.ServerCert.CertDirectory)
	}
	for _, w := range writable {
		if v, _ := volumeAt(p, c, w); v == nil || (v.EmptyDir == nil && v.PersistentVolumeClaim == nil) || mountFor(c, w).ReadOnly {
			errs = append(errs, fmt.Errorf("%s is not on a writable volume (the root filesystem is read-only)", w))
		}
	}
	for _, f := range []string{certFile, keyFile} {
		if v, _ := volumeAt(p, c, f); f != "" && (v == nil || v.Secret == nil) {
			errs = append(errs, fmt.Errorf("%s is not on a Secret volume", f))
		}
	}
	port := containerPort(c, "https")
	if port == nil || int(port.ContainerPort) != o.SecureServing.BindPort {
		errs = append(errs, fmt.Errorf("no container port https for --secure-port %d", o.SecureServing.BindPort))
	}
	if o.ConfigFile == "" {
		return o, append(errs, errors.New("no --config: the manifests ship one"))
	}
	data, err := mountedConfigMapFile(r, p, c, o.ConfigFile)
	if err != nil {
		return o, append(errs, fmt.Errorf("--config=%s: %w", o.ConfigFile, err))
	}
	// The gateway's own check of its options and config file, on a copy of
	// the file where the test can read it.
	local := filepath.Join(configDir, c.Name+"-"+path.Base(o.ConfigFile))
	if err := os.WriteFile(local, []byte(data), 0o600); err != nil {
		return o, append(errs, err)
	}
	mounted := o.ConfigFile
	o.ConfigFile = local
	for _, e := range o.Validate() {
		errs = append(errs, fmt.Errorf("validate (--config=%s from its ConfigMap): %w", mounted, e))
	}
	o.ConfigFile = mounted
	return o, errs
}

// gatewayOptions parses args with the gateway's own flag set.
func gatewayOptions(args []string) (*server.Options, error) {
	o := server.NewOptions()
	named := o.Flags()
	fs := pflag.NewFlagSet(gatewayName, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, n := range named.Order {
		fs.AddFlagSet(named.FlagSet(n))
	}
	if err := fs.Parse(args); err != nil {
		return nil, fmt.Errorf("args: %w", err)
	}
	return o, nil
}

// checkProbes: liveness on /livez, readiness on /readyz, both HTTPS on the
// https port. /livez fails (scrape-timely) from node discovery until the
// first kubelet scrape, up to one --metric-resolution: the liveness probe
// must not kill the pod for that, and must wait for start (a startup probe
// or an initial delay).
func checkProbes(c *corev1.Container, o *server.Options) []error {
	var errs []error
	res := o.Kubelet.Resolution
	for _, p := range []struct {
		name, path string
		probe      *corev1.Probe
	}{{"startupProbe", "/livez", c.StartupProbe}, {"livenessProbe", "/livez", c.LivenessProbe}, {"readinessProbe", "/readyz", c.ReadinessProbe}} {
		g := (*corev1.HTTPGetAction)(nil)
		if p.probe != nil {
			g = p.probe.HTTPGet
		}
		// A query (/readyz?exclude=query-backend) only leaves checks out.
		if path, _, _ := strings.Cut(ptrPath(g), "?"); g == nil || path != p.path || g.Scheme != corev1.URISchemeHTTPS || g.Port.String() != "https" {
			errs = append(errs, fmt.Errorf("%s: want HTTPS GET %s on port https", p.name, p.path))
		}
	}
	if l := c.LivenessProbe; l != nil {
		period, failures := orDefault(l.PeriodSeconds, 10), orDefault(l.FailureThreshold, 3)
		if tolerated := time.Duration(period*(failures-1)) * time.Second; tolerated < res {
			errs = append(errs, fmt.Errorf("livenessProbe: kills after %v of failures, less than --metric-resolution %v", tolerated, res))
		}
		if c.StartupProbe == nil && time.Duration(l.InitialDelaySeconds)*time.Second < res {
			errs = append(errs, fmt.Errorf("livenessProbe: no startup probe and an initial delay below --metric-resolution %v", res))
		}
	}
	return errs
}

func ptrPath(g *corev1.HTTPGetAction) string {
	if g == nil {
		return ""
	}
	return g.Path
}

func orDefault(v, d int32) int32 {
	if v == 0 {
		return d
	}
	return v
}

// volumeAt is the volume mounted at the deepest mount path holding p.
func volumeAt(pod *corev1.PodSpec, c *corev1.Container, p string) (*corev1.Volume, string) {
	m := mountFor(c, p)
	if m.Name == "" {
		return nil, ""
	}
	rel := strings.TrimPrefix(strings.TrimPrefix(path.Clean(p), path.Clean(m.MountPath)), "/")
	for i := range pod.Volumes {
		if pod.Volumes[i].Name == m.Name {
			return &pod.Volumes[i], rel
		}
	}
	return nil, ""
}

func mountFor(c *corev1.Container, p string) corev1.VolumeMount {
	var best corev1.VolumeMount
	p = path.Clean(p)
	for _, m := range c.VolumeMounts {
		mp := path.Clean(m.MountPath)
		if (p == mp || strings.HasPrefix(p, mp+"/")) && len(mp) > len(best.MountPath) {
			best = m
			best.MountPath = mp
		}
	}
	return best
}

// mountedConfigMapFile is the content the pod sees at p.
func mountedConfigMapFile(r *rendering, pod *corev1.PodSpec, c *corev1.Container, p string) (string, error) {
	v, rel := volumeAt(pod, c, p)
	if v == nil || v.ConfigMap == nil {
		return "", errors.New("not on a ConfigMap volume")
	}
	cm := r.configMaps[namespace+"/"+v.ConfigMap.Name]
	if cm == nil {
		return "", fmt.Errorf("no ConfigMap %s", v.ConfigMap.Name)
	}
	k := rel
	for _, item := range v.ConfigMap.Items {
		if item.Path == rel {
			k = item.Key
		}
	}
	data, ok := cm.Data[k]
	if !ok {
		return "", fmt.Errorf("ConfigMap %s has no key %s", cm.Name, k)
	}
	return data, nil
}

func containerPort(c *corev1.Container, name string) *corev1.ContainerPort {
	for i := range c.Ports {
		if c.Ports[i].Name == name {
			return &c.Ports[i]
		}
	}
	return nil
}

// gatewayConfig is the GatewayConfig the Deployment's --config names, loaded
// by the gateway's own loader.
func gatewayConfig(r *rendering, d *appsv1.Deployment, dir string) (*scrape.GatewayConfig, error) {
	p, c := &d.Spec.Template.Spec, &d.Spec.Template.Spec.Containers[0]
	const flag = "--config="
	i := slices.IndexFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, flag) })
	if i < 0 {
		return nil, errors.New("no --config")
	}
	data, err := mountedConfigMapFile(r, p, c, strings.TrimPrefix(c.Args[i], flag))
	if err != nil {
		return nil, err
	}
	f := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(f, []byte(data), 0o600); err != nil {
		return nil, err
	}
	cfg, errs := scrape.LoadConfigFile(f)
	return cfg, errors.Join(errs...)
}
