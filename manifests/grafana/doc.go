// Package grafana ships the Grafana dashboards for metrics-gateway's
// Prometheus-compatible query API (/prometheus/api/v1) and lists every PromQL expression
// in them, so that tests can parse them and run them against a live gateway.
// It sits at the end of the data flow: the dashboards read, through Grafana,
// only series that the scrape jobs store (kubelet, annotated pods, the
// optional cAdvisor job) and the gateway's own metrics. The JSON files under
// dashboards/ are what users import; provisioning/ holds Grafana's
// provisioning files for the datasource and the dashboards.
package grafana
