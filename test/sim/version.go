package sim

import (
	"errors"
	"runtime/debug"
	"strings"

	apimachineryversion "k8s.io/apimachinery/pkg/version"
	"k8s.io/component-base/metrics"
)

// KubeletVersion is the k8s.io/kubernetes release this binary was built with: the
// kubelet whose collector it runs, and so the version its nodes report.
func KubeletVersion() (string, error) {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", errors.New("no build info; build with module support")
	}
	for _, d := range bi.Deps {
		if d.Path == "k8s.io/kubernetes" {
			if d.Replace != nil {
				d = d.Replace
			}
			return d.Version, nil
		}
	}
	return "", errors.New("k8s.io/kubernetes missing from build info")
}

// PinKubeletVersion makes component-base see the kubelet release instead of the
// "v0.0.0-master" of a build without -ldflags. The version decides which deprecated
// metrics are hidden (scrape_error is hidden from 1.29 on), so without it
// /metrics/resource would carry a family a real kubelet does not send. It sets
// component-base's process-wide hook, so call it once, before any registry exists.
func PinKubeletVersion(gitVersion string) {
	major, minor, _ := strings.Cut(strings.TrimPrefix(gitVersion, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	metrics.BuildVersion = func() apimachineryversion.Info {
		return apimachineryversion.Info{Major: major, Minor: minor, GitVersion: gitVersion}
	}
}
