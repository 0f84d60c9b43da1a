package doctor

import (
	"context"
	"fmt"
	"io"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// Options say which gateway to check.
type Options struct {
	// Namespace and Service are where the gateway's APIServices must point.
	Namespace, Service string
	// APIServiceNames are the gateway's own APIServices.
	APIServiceNames []string
	// AsServiceAccount, "namespace/name", checks RBAC with
	// SubjectAccessReview for that ServiceAccount instead of
	// SelfSubjectAccessReview for the caller.
	AsServiceAccount string
	// Kubelet, when set, probes one kubelet directly with the gateway's
	// kubelet client settings.
	Kubelet *KubeletCheck
}

// Result is the outcome of one check. Problem and Fix are empty when OK;
// Note is optional detail shown on a passing line.
type Result struct {
	Check   string
	OK      bool
	Note    string
	Problem string
	Fix     string
}

// String is the line doctor prints: "PASS <check>" (": note" when there is
// one) or "FAIL <check>: <problem>. Fix: <fix>".
func (r Result) String() string {
	if r.OK {
		if r.Note != "" {
			return fmt.Sprintf("PASS %s: %s", r.Check, r.Note)
		}
		return "PASS " + r.Check
	}
	return fmt.Sprintf("FAIL %s: %s. Fix: %s", r.Check, r.Problem, r.Fix)
}

func pass(check, note string) Result { return Result{Check: check, OK: true, Note: note} }

func fail(check, problem, fix string) Result {
	return Result{Check: check, Problem: problem, Fix: fix}
}

// Run runs every check in order. It never stops early: an unreadable object
// is itself a failing result, so the caller sees every problem at once.
func Run(ctx context.Context, kube kubernetes.Interface, dyn dynamic.Interface, o Options) []Result {
	var rs []Result
	auth := readAuthConfig(ctx, kube)
	rs = append(rs, checkRequestHeaderCA(auth))
	svcs, svcResults := checkAPIServices(ctx, dyn, o)
	rs = append(rs, checkAllowedNames(auth, svcs))
	rs = append(rs, svcResults...)
	rs = append(rs, checkOwners(ctx, dyn, o, svcs)...)
	rs = append(rs, checkRBAC(ctx, kube, o)...)
	if o.Kubelet != nil {
		rs = append(rs, checkKubelet(ctx, kube, *o.Kubelet))
	}
	return rs
}

// Print writes one line per result and reports how many failed.
func Print(w io.Writer, rs []Result) (failed int) {
	for _, r := range rs {
		fmt.Fprintln(w, r.String())
		if !r.OK {
			failed++
		}
	}
	return failed
}
