// Package storage owns the embedded Prometheus TSDB and the one PromQL engine
// every API of the gateway shares. Scrapers append into it through
// Appendable; the resource, custom and query APIs read through Querier. It is
// the only package that imports tsdb and promql internals, so retention,
// limits and query timeouts are decided in one place.
package storage
