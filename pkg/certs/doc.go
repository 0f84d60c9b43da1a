// Package certs gives the gateway a serving certificate that the
// kube-aggregator trusts without hand-work. It sits beside the server in the
// data flow: before the API server is built, a Manager loads the CA and
// serving certificate from a Secret the gateway owns (or creates them there),
// writes the serving pair into the --cert-dir files that the apiserver's
// dynamic certificate controller reloads, and sets spec.caBundle of the
// gateway's own APIServices; afterwards it keeps doing so, rotating the
// serving certificate and, much more rarely, the CA before they expire.
// Replicas share the Secret through optimistic concurrency, so a highly
// available gateway serves one certificate and rotates it once.
package certs
