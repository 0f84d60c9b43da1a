package server

// Version is the gateway's version, set at build time with
// -ldflags "-X github.com/metrics-gateway/metrics-gateway/pkg/server.Version=...".
var Version = "v0.1.0-dev"
