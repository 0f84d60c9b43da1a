// Command metrics-gateway serves metrics.k8s.io from an embedded TSDB fed by
// kubelet scrapes. All logic lives in app; this is the one place that exits.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/metrics-gateway/metrics-gateway/cmd/metrics-gateway/app"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	args := os.Args[1:]
	// Installed as kubectl-explain_hpa, it is `kubectl explain-hpa`.
	if filepath.Base(os.Args[0]) == app.KubectlPlugin {
		args = append([]string{"explain", "hpa"}, args...)
	}
	if err := app.Run(ctx, args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "metrics-gateway:", err)
		os.Exit(1)
	}
}
