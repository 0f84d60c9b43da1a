// Command localcluster starts, inspects and stops the loopback control plane of package
// test/cluster from a shell, for `make demo` and for poking at a cluster by hand:
//
//	localcluster up --dir D [--bin-dir test/bin] [--etcd PATH]
//	localcluster status --dir D
//	localcluster down --dir D
//
// `up` leaves the processes running in their own session after it exits and records
// their PIDs in D/pids; `down` stops exactly those PIDs. The gateway is registered
// separately (see cluster.RegisterAPIService).
package main
