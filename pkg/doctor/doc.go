// Package doctor checks, from outside the data flow, what the gateway needs
// from its cluster to serve at all: the aggregation layer's requestheader
// configuration, its APIServices and who owns their groups, and its RBAC.
// Each check is a small function over client-go interfaces returning Results
// that name the problem and its fix; `metrics-gateway doctor` prints them.
package doctor
