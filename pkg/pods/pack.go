package pods

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// pack moves the strings p keeps into one allocation. The protobuf decoder
// gives every string field its own, so a slim pod kept 18 heap objects
// (29 for a Deployment's pod), and the GC marks each of them in every
// cycle: at 30,000 pods about half a million of a heap of 2.4 million
// objects (docs/benchmarks.md, "Small queries at 1000×30"). Packed, they
// keep 8 and 10 (BenchmarkSlimRetained). Values from a small known set
// (the phase, the Ready status, a port's protocol) become the package's
// constants, shared by every pod.
//
// The strings of a packed pod share one backing array: whatever keeps one
// of them keeps all of them, a few hundred bytes.
func pack(p *Pod) {
	p.Phase = corev1.PodPhase(canonical(string(p.Phase), string(corev1.PodPending), string(corev1.PodRunning),
		string(corev1.PodSucceeded), string(corev1.PodFailed), string(corev1.PodUnknown)))
	p.Ready = corev1.ConditionStatus(canonical(string(p.Ready), string(corev1.ConditionTrue), string(corev1.ConditionFalse),
		string(corev1.ConditionUnknown)))
	for i := range p.Containers {
		for j := range p.Containers[i].Ports {
			pp := &p.Containers[i].Ports[j]
			pp.Protocol = corev1.Protocol(canonical(string(pp.Protocol), string(corev1.ProtocolTCP), string(corev1.ProtocolUDP),
				string(corev1.ProtocolSCTP)))
		}
	}
	// Slim's copy of the ObjectMeta shares these with the Pod it was made
	// from, which pack must not change.
	p.Finalizers, p.OwnerReferences = slices.Clone(p.Finalizers), slices.Clone(p.OwnerReferences)
	size := 0
	p.eachString(func(s *string) { size += len(*s) })
	for _, m := range []map[string]string{p.Labels, p.Annotations} {
		for k, v := range m {
			size += len(k) + len(v)
		}
	}
	var b strings.Builder
	// Grown once, the builder never moves what it has written: each string
	// taken from it below points into the same array.
	b.Grow(size)
	put := func(s *string) {
		if *s == "" {
			return
		}
		b.WriteString(*s)
		all := b.String()
		*s = all[len(all)-len(*s):]
	}
	p.eachString(put)
	p.Labels = packMap(p.Labels, put)
	p.Annotations = packMap(p.Annotations, put)
}

// eachString calls f with a pointer to every string field of p that pack
// packs, map keys and values aside.
func (p *Pod) eachString(f func(*string)) {
	m := &p.ObjectMeta
	for _, s := range []*string{&m.Name, &m.GenerateName, &m.Namespace, (*string)(&m.UID), &m.ResourceVersion,
		&p.NodeName, &p.PodIP, &p.HostIP} {
		f(s)
	}
	for i := range m.Finalizers {
		f(&m.Finalizers[i])
	}
	for i := range m.OwnerReferences {
		o := &m.OwnerReferences[i]
		for _, s := range []*string{&o.APIVersion, &o.Kind, &o.Name, (*string)(&o.UID)} {
			f(s)
		}
	}
	for i := range p.Containers {
		c := &p.Containers[i]
		for _, s := range []*string{&c.Name, &c.Image, &c.ID} {
			f(s)
		}
		for j := range c.Ports {
			f(&c.Ports[j].Name)
		}
	}
}

// packMap returns a copy of m whose keys and values put has packed; nil
// stays nil.
func packMap(m map[string]string, put func(*string)) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		put(&k)
		put(&v)
		out[k] = v
	}
	return out
}

// canonical returns the constant among known that equals s, or s.
func canonical(s string, known ...string) string {
	for _, k := range known {
		if s == k {
			return k
		}
	}
	return s
}
