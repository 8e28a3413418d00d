#!/usr/bin/env bash
# Build the test control plane (kube-apiserver, kube-controller-manager, etcd) from
# the Go module proxy with the installed Go toolchain, into the cache directory
#   ${ENCLAVE_CACHE:-$HOME/.cache/enclave}/kube/<K8S_VERSION>/
# keyed by version. The build goes into a temporary directory beside it that is
# renamed into place only when every binary is built and runs, so an interrupted
# build never leaves a half-filled cache; a lock keeps two checkouts from building
# at once.
#
# Usage: hack/kube/build.sh            build when the cache has no binaries
#        hack/kube/build.sh --force    rebuild even when it has
#        hack/kube/build.sh --tidy     refresh go.mod/go.sum of the build modules
#                                      (after a version bump), then exit
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.env
. "$HERE/versions.env"
say() { printf '\033[1m[kube]\033[0m %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

force=0
case "${1:-}" in
  --force) force=1 ;;
  --tidy)
    for m in k8s etcd; do
      say "go mod tidy in hack/kube/$m"
      (cd "$HERE/$m" && GOFLAGS=-mod=mod go mod tidy)
    done
    exit 0 ;;
  "") ;;
  *) die "unknown argument '$1' (expected --force or --tidy)" ;;
esac

command -v go >/dev/null || die "Go is not installed; install Go >= 1.26 (the control plane is built from source)."
export GOFLAGS="-mod=mod -buildvcs=false -trimpath"
export GOTOOLCHAIN=local
# The build modules need this Go release or newer (their go.mod `go` line).
need=$(awk '$1 == "go" {print $2; exit}' "$HERE/k8s/go.mod")
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
  die "Go $have is too old to build Kubernetes v$K8S_VERSION; it needs Go >= $need."
fi

CACHE_ROOT="${ENCLAVE_CACHE:-$HOME/.cache/enclave}/kube"
DEST="$CACHE_ROOT/$K8S_VERSION"
BINARIES=(etcd kube-apiserver kube-controller-manager)
complete() { for b in "${BINARIES[@]}"; do [ -x "$DEST/bin/$b" ] || return 1; done; }

mkdir -p "$CACHE_ROOT"
exec 9>"$CACHE_ROOT/.lock"
if ! flock -n 9; then
  say "another build holds $CACHE_ROOT/.lock; waiting for it"
  flock 9
fi
if complete && [ "$force" = 0 ]; then
  say "binaries for Kubernetes v$K8S_VERSION already in $DEST"
  exit 0
fi

TMP=$(mktemp -d "$CACHE_ROOT/.build-$K8S_VERSION.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/bin" "$TMP/src"
# Build from copies of the build modules so that -mod=mod never rewrites the
# checked-in go.mod / go.sum.
cp -r "$HERE/k8s" "$HERE/etcd" "$TMP/src/"
started=$(date +%s)

# run_build NAME DIR LOG LDFLAGS OUT PACKAGE...: go build -v in the background, with a
# progress line every 15 s (packages compiled so far out of the packages involved).
run_build() {
  local name=$1 dir=$2 log=$3 ldflags=$4 out=$5; shift 5
  local total
  say "$name: resolving modules (downloads from the Go module proxy the first time)"
  (cd "$dir" && go mod download) >>"$log" 2>&1 || { tail -20 "$log" >&2; die "$name: go mod download failed; full log above"; }
  total=$(cd "$dir" && go list -deps "$@" 2>>"$log" | wc -l) || total='?'
  say "$name: compiling (at most $total packages)"
  (cd "$dir" && exec go build -v -ldflags "$ldflags" -o "$out" "$@") >>"$log" 2>&1 &
  local pid=$! t0 n
  t0=$(date +%s)
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15 &
    wait $! || true
    kill -0 "$pid" 2>/dev/null || break
    n=$(grep -cv '^go: ' "$log" || true)
    say "$name: $n/$total packages compiled, $(( $(date +%s) - t0 ))s"
  done
  if ! wait "$pid"; then
    tail -30 "$log" >&2
    cp "$log" "$CACHE_ROOT/build-failed.log"
    die "$name: go build failed (full log: $CACHE_ROOT/build-failed.log)"
  fi
  say "$name: built in $(( $(date +%s) - t0 ))s"
}

pkgv="k8s.io/component-base/version"
kldflags="-s -w -X $pkgv.gitVersion=v$K8S_VERSION -X $pkgv.gitMajor=${K8S_VERSION%%.*}"
kminor=${K8S_VERSION#*.}
kldflags="$kldflags -X $pkgv.gitMinor=${kminor%%.*} -X $pkgv.gitTreeState=clean"
say "building into $DEST; the first build takes 8 to 15 minutes on 2 cores (see docs/testing.md)"
run_build "Kubernetes v$K8S_VERSION" "$TMP/src/k8s" "$TMP/k8s.log" "$kldflags" "$TMP/bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
run_build "etcd v$ETCD_VERSION" "$TMP/src/etcd" "$TMP/etcd.log" "-s -w" "$TMP/bin/etcd" \
  go.etcd.io/etcd/server/v3

# Check that each binary runs before the cache takes it.
"$TMP/bin/etcd" --version >"$TMP/etcd.version" || die "the built etcd does not run"
"$TMP/bin/kube-apiserver" --version >"$TMP/kube-apiserver.version" || die "the built kube-apiserver does not run"
"$TMP/bin/kube-controller-manager" --version >/dev/null || die "the built kube-controller-manager does not run"
elapsed=$(( $(date +%s) - started ))
cat >"$TMP/bin/BUILD-INFO" <<EOF
kubernetes=v$K8S_VERSION
etcd=v$ETCD_VERSION
go=$(go env GOVERSION)
built=$(date -u +%Y-%m-%dT%H:%M:%SZ)
seconds=$elapsed
EOF

# Swap the finished directory into place: a rename, so readers see all or nothing.
mkdir -p "$TMP/out"
mv "$TMP/bin" "$TMP/out/bin"
if [ -e "$DEST" ]; then
  mv "$DEST" "$TMP/old"
fi
mv -T "$TMP/out" "$DEST"
say "built Kubernetes v$K8S_VERSION + etcd v$ETCD_VERSION in ${elapsed}s into $DEST/bin"
