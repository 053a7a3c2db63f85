#!/usr/bin/env bash
# Builds the local cluster's binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kubectl, kwok, kwokctl, helm, promtool, prometheus, alertmanager,
# argocd) from the versions pinned in versions.env, through the Go module proxy, into a cache
# folder outside the repo.
# A build whose key (versions.env + the recipe number) is already cached is reused at once.
#
# Prints the bin folder on stdout; progress and errors go to stderr.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

die() { echo "build-binaries: $*" >&2; exit 1; }
say() { echo "build-binaries: $*" >&2; }

command -v go >/dev/null 2>&1 || die "no 'go' on PATH. Install Go >= 1.26 (e.g. apt-get install golang-go, or your distribution's Go) and retry."

cache_root=${RV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rollback-verifier}
# Bump when the build recipe below changes in a way that changes the binaries.
recipe=2
key=$( (cat "$here/versions.env"; echo "recipe=$recipe") | sha256sum | cut -c1-12)
bin="$cache_root/bin-$key"
work="$cache_root/build-$key"
log_dir="$cache_root/logs"
mkdir -p "$log_dir"

wanted=(etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl kwok kwokctl helm
  promtool prometheus alertmanager argocd)
have_all() {
  for b in "${wanted[@]}"; do [ -x "$bin/$b" ] || return 1; done
  [ -f "$bin/argocd-manifests/install.yaml" ] && [ -f "$bin/argocd-application-crd.yaml" ]
}
if have_all; then echo "$bin"; exit 0; fi

mkdir -p "$bin" "$work"
export CGO_ENABLED=0 GOFLAGS=-mod=mod GOWORK=off
log="$log_dir/build-$key.log"
: >"$log"
run() { # run <what> <cmd...>: the command's output goes to the log; on failure, its tail is shown
  local what=$1; shift
  say "$what"
  if ! "$@" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "$what failed (full log: $log). Check that the Go module proxy is reachable (go env GOPROXY) and that the disk has a few GB free."
  fi
}

# k8s.io/kubernetes replaces every staging module with a local path, so `go install
# pkg@version` refuses it; a wrapper module that pins each staging module instead builds it.
kube_minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
staging_version="v0.${KUBERNETES_VERSION#v1.}"
build_kubernetes() {
  local mod="$work/kubernetes"
  mkdir -p "$mod"
  local upstream
  upstream=$(curl -fsS "$(go env GOPROXY | cut -d, -f1)/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod") \
    || die "cannot read k8s.io/kubernetes@$KUBERNETES_VERSION's go.mod from the Go module proxy"
  {
    echo "module rollback-verifier.local/cluster-kubernetes"
    echo "$upstream" | grep -E '^go [0-9]'
    echo "$upstream" | grep -E '^godebug' || true
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo "replace ("
    echo "$upstream" | sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' \
      | while read -r m; do echo "  $m => $m $staging_version"; done
    echo ")"
  } >"$mod/go.mod"
  local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl)
  local v pkgs=() ldflags=""
  for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  for v in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $v.gitVersion=$KUBERNETES_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$kube_minor"
    ldflags+=" -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
  done
  (cd "$mod" && run "resolving Kubernetes $KUBERNETES_VERSION modules" go get "${pkgs[@]/%/@$KUBERNETES_VERSION}")
  (cd "$mod" && run "compiling kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl (slow on a cold cache)" \
    go build -trimpath -tags selinux,notest -ldflags "-s -w$ldflags" -o "$bin/" "${pkgs[@]}")
}

# etcd's server module has relative replaces too: same wrapper trick.
build_etcd() {
  local mod="$work/etcd"
  mkdir -p "$mod"
  printf 'module rollback-verifier.local/cluster-etcd\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >"$mod/go.mod"
  (cd "$mod" && run "resolving etcd $ETCD_VERSION" go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  (cd "$mod" && run "compiling etcd" go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3)
}

go_install() { # go_install <what> <pkg@version>: modules without replaces install directly
  local what=$1 pkg=$2
  run "compiling $what" env GOBIN="$bin" go install -trimpath -ldflags "-s -w" "$pkg"
}

[ -x "$bin/etcd" ] || build_etcd
[ -x "$bin/kube-apiserver" ] && [ -x "$bin/kubectl" ] || build_kubernetes
[ -x "$bin/kwok" ] || go_install kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
[ -x "$bin/kwokctl" ] || go_install kwokctl "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
[ -x "$bin/helm" ] || go_install helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
[ -x "$bin/promtool" ] || go_install promtool "github.com/prometheus/prometheus/cmd/promtool@$PROMETHEUS_VERSION"

# Argo CD, the real one (controller, repo-server, server, notifications, CLI: one multi-call binary),
# and its manifests (CRDs, config objects) from the same module version. Pinned to v3.2.11: v3.3 and
# later build gitops-engine from a nested module (./gitops-engine) that the module proxy does not
# serve, and v3.2.12 does not compile (settings.ValidateExternalURL is missing from its module zip).
argocd_dir() { go mod download -json "github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION" | sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\$/\1/p"; }
build_argocd() {
  local mod="$work/argocd" gomod
  mkdir -p "$mod"
  gomod=$(argocd_dir GoMod) || true
  [ -f "$gomod" ] || die "cannot download github.com/argoproj/argo-cd/v3@$ARGOCD_VERSION from the Go module proxy"
  if grep -q '^replace github.com/argoproj/gitops-engine => \./' "$gomod"; then
    die "argo-cd $ARGOCD_VERSION builds gitops-engine from its own tree (./gitops-engine), which the Go module proxy does not serve: pin ARGOCD_VERSION=v3.2.11 in versions.env"
  fi
  {
    echo "module rollback-verifier.local/argocd"
    grep -E '^go [0-9]' "$gomod"
    echo "require github.com/argoproj/argo-cd/v3 $ARGOCD_VERSION"
    # a dependency's replace directives are ignored by the main module: copy argo-cd's own
    awk '/^replace \($/{inb=1; print; next} inb && /^\)$/{inb=0; print; next} inb{print; next} /^replace /{print}' "$gomod"
  } >"$mod/go.mod"
  (cd "$mod" && run "resolving Argo CD $ARGOCD_VERSION modules" go get "github.com/argoproj/argo-cd/v3/cmd@$ARGOCD_VERSION")
  local p=github.com/argoproj/argo-cd/v3/common kv
  kv=$(cd "$mod" && go list -m k8s.io/client-go | awk '{print $NF}')
  # common.version without the leading v: Argo CD prints it with one of its own.
  (cd "$mod" && run "compiling argocd (slow on a cold cache, about 2 GB of memory at link time)" go build -trimpath \
    -ldflags "-s -w -X $p.version=${ARGOCD_VERSION#v} -X $p.buildDate=1970-01-01T00:00:00Z -X $p.gitCommit=unknown -X $p.gitTreeState=clean -X $p.kubectlVersion=$kv" \
    -o "$bin/argocd" github.com/argoproj/argo-cd/v3/cmd)
}
fetch_argocd_manifests() {
  local dir
  dir=$(argocd_dir Dir)
  [ -f "$dir/manifests/install.yaml" ] || die "argo-cd $ARGOCD_VERSION has no manifests/install.yaml"
  mkdir -p "$bin/argocd-manifests"
  cp "$dir"/manifests/crds/{application,appproject,applicationset}-crd.yaml "$dir/manifests/install.yaml" "$bin/argocd-manifests/"
  cp "$dir/manifests/crds/application-crd.yaml" "$bin/argocd-application-crd.yaml"
}
[ -x "$bin/argocd" ] || build_argocd
if [ ! -f "$bin/argocd-manifests/install.yaml" ] || [ ! -f "$bin/argocd-application-crd.yaml" ]; then
  say "fetching Argo CD $ARGOCD_VERSION's CRDs and install manifests"
  fetch_argocd_manifests
fi

# Prometheus and Alertmanager for the e2e alerting tests (their web UIs are not needed).
[ -x "$bin/prometheus" ] || go_install prometheus "github.com/prometheus/prometheus/cmd/prometheus@$PROMETHEUS_VERSION"
# Alertmanager embeds its web UI (`//go:embed app/dist`), which upstream builds with npm and the module
# zip does not carry, so `go install` fails. Build it from a copy of the module's source with a
# placeholder page in app/dist: the API the tests use is untouched.
build_alertmanager() {
  local src="$work/alertmanager-$ALERTMANAGER_VERSION" dir
  dir=$(go mod download -json "github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [ -f "$dir/go.mod" ] || die "cannot download github.com/prometheus/alertmanager@$ALERTMANAGER_VERSION from the Go module proxy"
  rm -rf "$src" && cp -r "$dir" "$src" && chmod -R u+w "$src"
  mkdir -p "$src/ui/app/dist"
  echo '<!-- web UI not built (rollback-verifier test harness); the API serves -->' >"$src/ui/app/dist/index.html"
  local v=github.com/prometheus/common/version
  (cd "$src" && run "compiling alertmanager" go build -trimpath \
    -ldflags "-s -w -X $v.Version=${ALERTMANAGER_VERSION#v} -X $v.Revision=unknown -X $v.Branch=release" \
    -o "$bin/alertmanager" ./cmd/alertmanager)
}
[ -x "$bin/alertmanager" ] || build_alertmanager

have_all || die "some binaries are missing from $bin after the build (see $log)"
say "binaries ready in $bin"
echo "$bin"
