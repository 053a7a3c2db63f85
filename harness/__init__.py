"""The test harness: the local cluster, the operator as a process, the agents chart and its GitOps
repository, real Argo CD, Prometheus/Alertmanager and network faults. Used by the e2e tests, the demo
(`python -m demo`) and the benchmarks (`python -m bench`), imported from the repository's root."""
