// Command metrics-gateway serves metrics.k8s.io from an embedded TSDB fed by
// kubelet scrapes. All logic lives in app; this is the one place that exits.
package main

import (
	"fmt"
	"os"

	genericapiserver "k8s.io/apiserver/pkg/server"

	"github.com/metrics-gateway/metrics-gateway/cmd/metrics-gateway/app"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	if err := app.Run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "metrics-gateway:", err)
		os.Exit(1)
	}
}
