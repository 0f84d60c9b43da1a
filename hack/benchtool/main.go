// Command benchtool is the part of `make bench` (test/cmd/sidebyside) that needs
// the gateway's own packages, which the test module does not import:
//
//	prom-config  renders a Prometheus configuration with exactly the gateway's
//	             kubelet and annotated-pod jobs (pkg/scrape), so Prometheus
//	             scrapes the same targets with the same relabeling;
//	prefill      appends history for a list of series into a gateway storage
//	             directory (pkg/storage) before the gateway starts on it, so the
//	             side-by-side run measures a gateway that holds hours of data.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/model/labels"
	promstorage "github.com/prometheus/prometheus/storage"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/metrics-gateway/metrics-gateway/pkg/scrape"
	"github.com/metrics-gateway/metrics-gateway/pkg/storage"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: benchtool prom-config|prefill [flags]")
	}
	switch args[0] {
	case "prom-config":
		return promConfig(args[1:], stdout)
	case "prefill":
		return prefill(args[1:], stdout)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// promConfig writes the gateway's kubelet and pod jobs as one Prometheus file.
func promConfig(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("prom-config", flag.ContinueOnError)
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig for discovery and kubelet client credentials")
	kubeletCA := fs.String("kubelet-certificate-authority", "", "CA of the kubelets' serving certificates")
	resolution := fs.Duration("metric-resolution", 15*time.Second, "kubelet and pod scrape interval")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rc, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig %s: %w", *kubeconfig, err)
	}
	creds := scrape.Credentials{Kubeconfig: *kubeconfig, BearerToken: rc.BearerToken, CAData: rc.CAData,
		CAFile: rc.CAFile, CertData: rc.CertData, KeyData: rc.KeyData, CertFile: rc.CertFile, KeyFile: rc.KeyFile}
	ko := scrape.DefaultKubeletOptions()
	ko.Resolution, ko.UseNodeStatusPort, ko.CAFile = *resolution, true, *kubeletCA
	ko.PreferredAddressTypes = []string{"InternalIP"}
	kubelet, err := scrape.KubeletJobYAML(ko, creds)
	if err != nil {
		return err
	}
	pods, err := scrape.PodJobYAML(scrape.PodJobOptions{Interval: *resolution, Timeout: 10 * time.Second, Limits: scrape.DefaultLimits()}, creds)
	if err != nil {
		return err
	}
	var jobs []any
	for _, doc := range []string{kubelet, pods} {
		var c struct {
			ScrapeConfigs []any `json:"scrape_configs"`
		}
		if err := yaml.Unmarshal([]byte(doc), &c); err != nil {
			return fmt.Errorf("re-read job: %w", err)
		}
		jobs = append(jobs, c.ScrapeConfigs...)
	}
	out, err := yaml.Marshal(map[string]any{
		"global":         map[string]any{"scrape_interval": resolution.String(), "evaluation_interval": resolution.String()},
		"scrape_configs": jobs,
	})
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// Series is one line of the prefill input: a series exactly as the gateway
// stores it, and its value now.
type Series struct {
	Labels  map[string]string `json:"labels"`
	Value   float64           `json:"value"`
	Counter bool              `json:"counter"`
}

// prefill appends span of history, one sample per resolution, ending one
// resolution before now: counters rise linearly to their present value,
// gauges stay at theirs.
func prefill(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("prefill", flag.ContinueOnError)
	path := fs.String("storage-path", "", "gateway --storage-path")
	seriesFile := fs.String("series", "", "JSON lines of Series")
	span := fs.Duration("span", time.Hour, "history to write")
	resolution := fs.Duration("metric-resolution", 15*time.Second, "sample interval")
	retention := fs.Duration("storage-retention", 6*time.Hour, "gateway --storage-retention")
	if err := fs.Parse(args); err != nil {
		return err
	}
	series, err := readSeries(*seriesFile)
	if err != nil {
		return err
	}
	st, err := storage.Open(storage.Options{Path: *path, Retention: *retention},
		slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		return err
	}
	end := time.Now().Add(-*resolution)
	start := end.Add(-*span)
	// Counters start from zero a little before the window, so every sample is > 0.
	origin := start.Add(-5 * time.Minute)
	var samples int
	ctx := context.Background()
	for t := start; !t.After(end); t = t.Add(*resolution) {
		app := st.Appendable().AppenderV2(ctx)
		ts := t.UnixMilli()
		for _, s := range series {
			v := s.Value
			if s.Counter {
				v *= float64(t.Sub(origin)) / float64(end.Add(*resolution).Sub(origin))
			}
			if _, err := app.Append(0, s.lset, 0, ts, v, nil, nil, promstorage.AOptions{}); err != nil {
				_ = app.Rollback()
				return errors.Join(fmt.Errorf("append %s at %s: %w", s.lset, t, err), st.Close())
			}
			samples++
		}
		if err := app.Commit(); err != nil {
			return errors.Join(err, st.Close())
		}
	}
	if err := st.Close(); err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "prefilled %d series, %d samples, %s .. %s\n", len(series), samples,
		start.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339))
	return err
}

type series struct {
	Series
	lset labels.Labels
}

func readSeries(path string) ([]series, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []series
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var s Series
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, series{Series: s, lset: labels.FromMap(s.Labels)})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	sort.Slice(out, func(i, j int) bool { return labels.Compare(out[i].lset, out[j].lset) < 0 })
	return out, nil
}
