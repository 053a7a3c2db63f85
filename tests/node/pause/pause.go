// The pod sandbox's process for the real-node test: it holds the pod's namespaces and exits on
// SIGTERM or SIGINT, as the upstream pause image does. Built static and wrapped in a one-file image
// by tests/node/images.py, because no registry (registry.k8s.io/pause) is reachable from CI.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM)
	<-signals
}
