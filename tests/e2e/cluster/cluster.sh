#!/usr/bin/env bash
# The local Kubernetes cluster: real etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler, with KWOK standing in for kubelets, run as host processes by kwokctl.
#
#   cluster.sh up      build (or reuse) the binaries, start the cluster, wait until nodes are Ready
#   cluster.sh down    stop every process and remove the cluster's files
#   cluster.sh env     print `export KUBECONFIG=... RV_BIN_DIR=...` for the running cluster
#   cluster.sh logs    print the tail of every component's log
#   cluster.sh outage S  stop etcd and kube-apiserver for S seconds, then start what is not running
#                      (kube-controller-manager and kube-scheduler exit when they lose their leases)
#
# Settings (environment): RV_CLUSTER_NAME (default rollback-verifier), RV_CACHE_DIR (default
# ~/.cache/rollback-verifier), RV_CLUSTER_NODES (default 3), RV_CLUSTER_TIMEOUT (seconds, default 180),
# RV_BIN_DIR (use the binaries there instead of building), RV_APISERVER_PORT (default: a free port).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
name=${RV_CLUSTER_NAME:-rollback-verifier}
cache_root=${RV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rollback-verifier}
nodes=${RV_CLUSTER_NODES:-3}
timeout=${RV_CLUSTER_TIMEOUT:-180}
export KWOK_WORKDIR="$cache_root/kwok"
cluster_dir="$KWOK_WORKDIR/clusters/$name"
kubeconfig="$cache_root/$name.kubeconfig"

say() { echo "cluster: $*" >&2; }
die() { echo "cluster: error: $*" >&2; exit 1; }

# Binaries from $RV_BIN_DIR when the caller already built them (make does), else build or reuse.
bin_dir() { if [ -n "${RV_BIN_DIR:-}" ]; then echo "$RV_BIN_DIR"; else "$here/build-binaries.sh"; fi; }

print_logs() {
  local f
  for f in "$cluster_dir"/logs/*.log; do
    [ -f "$f" ] || continue
    echo "----- $(basename "$f") (last 25 lines; full log: $f)" >&2
    tail -n 25 "$f" >&2
  done
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

cmd_up() {
  local bin
  bin=$(bin_dir) || die "the cluster binaries could not be built (see the messages above)"
  export PATH="$bin:$PATH" # kwokctl checks the cluster with kubectl: ours, of the same version
  if [ -f "$kubeconfig" ] && kubectl --kubeconfig "$kubeconfig" --request-timeout=5s get --raw /readyz >/dev/null 2>&1; then
    say "cluster '$name' is already up"
    cmd_env "$bin"
    return
  fi
  [ -d "$cluster_dir" ] && { say "removing a stale cluster '$name'"; kwokctl delete cluster --name "$name" >/dev/null 2>&1 || true; }

  local api_port=${RV_APISERVER_PORT:-$(free_port)}
  port_free "$api_port" || die "port $api_port is already taken; set RV_APISERVER_PORT to a free port"
  local kube_minor
  kube_minor=$(. "$here/versions.env" && echo "$KUBERNETES_VERSION")
  say "starting etcd, kube-apiserver (port $api_port), kube-controller-manager, kube-scheduler, kwok"
  if ! timeout "$timeout" kwokctl create cluster --name "$name" --runtime binary \
      --kube-apiserver-port "$api_port" \
      --etcd-binary "$bin/etcd" \
      --kube-apiserver-binary "$bin/kube-apiserver" \
      --kube-controller-manager-binary "$bin/kube-controller-manager" \
      --kube-scheduler-binary "$bin/kube-scheduler" \
      --kwok-controller-binary "$bin/kwok" \
      --config "$here/kwok-stages.yaml" \
      --config "$here/kwokctl.yaml" \
      --kubeconfig "$kubeconfig" \
      --wait "${timeout}s" >"$cache_root/kwokctl-create.log" 2>&1; then
    cat "$cache_root/kwokctl-create.log" >&2
    print_logs
    kwokctl delete cluster --name "$name" >/dev/null 2>&1 || true
    die "the cluster did not come up within ${timeout}s (kwokctl output and component logs above; version $kube_minor)"
  fi

  local i
  for i in $(seq 1 "$nodes"); do
    cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {kwok.x-k8s.io/node: fake, node.alpha.kubernetes.io/ttl: "0"}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
---
EOF
  done | kubectl --kubeconfig "$kubeconfig" apply -f - >/dev/null
  if ! kubectl --kubeconfig "$kubeconfig" wait --for=condition=Ready node --all --timeout="${timeout}s" >/dev/null; then
    print_logs
    die "the KWOK nodes did not become Ready within ${timeout}s (component logs above)"
  fi
  # Pods need the namespace's default ServiceAccount, made by the controller manager.
  local deadline=$((SECONDS + timeout))
  until kubectl --kubeconfig "$kubeconfig" -n default get serviceaccount default >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { print_logs; die "the controller manager made no default ServiceAccount within ${timeout}s"; }
    sleep 0.5
  done
  say "cluster '$name' is up: $nodes KWOK nodes, kubeconfig $kubeconfig"
  cmd_env "$bin"
}

cmd_down() {
  local kwokctl
  kwokctl=$(ls -1d "$cache_root"/bin-*/kwokctl 2>/dev/null | head -n 1 || true)
  if [ -d "$cluster_dir" ] && [ -n "$kwokctl" ]; then
    "$kwokctl" delete cluster --name "$name" >/dev/null 2>&1 || say "kwokctl could not delete '$name' cleanly"
  fi
  # Whatever kwokctl left behind (a crashed create) must not outlive us.
  local pidfile pid
  for pidfile in "$cluster_dir"/pids/*.pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
  done
  rm -rf "$cluster_dir" "$kubeconfig"
  say "cluster '$name' is down"
}

cmd_outage() {
  local seconds=${1:?usage: cluster.sh outage SECONDS} component pidfile
  [ -d "$cluster_dir" ] || die "no cluster '$name' is up"
  for component in kube-apiserver etcd; do
    pidfile="$cluster_dir/pids/$component.pid"
    # SIGKILL: a crash, and no graceful shutdown still running when kwokctl looks for what to start.
    [ -f "$pidfile" ] && kill -KILL "$(cat "$pidfile")" 2>/dev/null || true
  done
  say "etcd and kube-apiserver stopped for ${seconds}s"
  sleep "$seconds"
  # kwokctl starts every component that is not running (and leaves the running ones alone).
  timeout "$timeout" "$(bin_dir)/kwokctl" start cluster --name "$name" >/dev/null 2>&1 \
    || { print_logs; die "the cluster did not start again within ${timeout}s"; }
  say "cluster '$name' is back"
}

cmd_env() {
  local bin=${1:-$(bin_dir)}
  [ -f "$kubeconfig" ] || die "no cluster '$name' is up (run: make cluster-up)"
  echo "export KUBECONFIG=$kubeconfig RV_BIN_DIR=$bin PATH=$bin:\$PATH"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  logs) print_logs ;;
  outage) cmd_outage "${2:-}" ;;
  *) echo "usage: $0 up|down|env|logs|outage SECONDS" >&2; exit 2 ;;
esac
