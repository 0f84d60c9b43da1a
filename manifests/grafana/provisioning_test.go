package grafana

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

func TestProvisioning(t *testing.T) {
	b, err := os.ReadFile("provisioning/datasources/metrics-gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var dsFile struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL, Access string
			IsDefault                    bool              `json:"isDefault"`
			Editable                     bool              `json:"editable"`
			JSONData                     map[string]any    `json:"jsonData"`
			SecureJSONData               map[string]string `json:"secureJsonData"`
		} `json:"datasources"`
	}
	if err := yaml.UnmarshalStrict(b, &dsFile); err != nil {
		t.Fatal(err)
	}
	if dsFile.APIVersion != 1 || len(dsFile.Datasources) != 1 {
		t.Fatalf("apiVersion %d, %d datasources; want 1 and 1", dsFile.APIVersion, len(dsFile.Datasources))
	}
	ds := dsFile.Datasources[0]
	want := map[string]any{"httpMethod": "POST", "prometheusType": "Prometheus", "timeInterval": "15s", "tlsAuthWithCACert": true, "httpHeaderName1": "Authorization"}
	for k, v := range want {
		if ds.JSONData[k] != v {
			t.Errorf("jsonData.%s = %v, want %v", k, ds.JSONData[k], v)
		}
	}
	if _, skip := ds.JSONData["tlsSkipVerify"]; skip || strings.Contains(string(b), "tlsSkipVerify") {
		t.Error("tlsSkipVerify must not be set")
	}
	// The dashboards' datasource variable defaults to this name.
	if ds.Type != "prometheus" || ds.Name != "metrics-gateway" || ds.UID != "metrics-gateway" || ds.Access != "proxy" ||
		ds.URL != "https://metrics-gateway.kube-system.svc:443/prometheus" {
		t.Errorf("datasource %s/%s type %s access %s url %s", ds.Name, ds.UID, ds.Type, ds.Access, ds.URL)
	}
	if ds.SecureJSONData["httpHeaderValue1"] != "Bearer $METRICS_GATEWAY_TOKEN" || ds.SecureJSONData["tlsCACert"] != "$METRICS_GATEWAY_CA_CERT" {
		t.Errorf("secureJsonData %v, want the token and CA from the environment", ds.SecureJSONData)
	}
	// $__rate_interval is 1m in Expressions: 4 × the datasource's interval.
	if builtins["__rate_interval"] != "1m" {
		t.Errorf("$__rate_interval fixed at %s, want 1m for a 15s timeInterval", builtins["__rate_interval"])
	}

	b, err = os.ReadFile("provisioning/dashboards/metrics-gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var dashFile struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Name, Folder, Type    string
			OrgID                 int  `json:"orgId"`
			DisableDeletion       bool `json:"disableDeletion"`
			AllowUIUpdates        bool `json:"allowUiUpdates"`
			UpdateIntervalSeconds int  `json:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `json:"path"`
				FoldersFromFilesStructure bool   `json:"foldersFromFilesStructure"`
			} `json:"options"`
		} `json:"providers"`
	}
	if err := yaml.UnmarshalStrict(b, &dashFile); err != nil {
		t.Fatal(err)
	}
	if dashFile.APIVersion != 1 || len(dashFile.Providers) != 1 || dashFile.Providers[0].Type != "file" || dashFile.Providers[0].Options.Path == "" {
		t.Errorf("dashboard provider %+v, want one file provider with a path", dashFile)
	}
}
