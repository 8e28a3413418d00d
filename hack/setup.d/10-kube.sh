#!/usr/bin/env bash
# make setup, step 4: the test control plane (etcd, kube-apiserver,
# kube-controller-manager) built from the Go module proxy and cached outside the
# repository under ${ENCLAVE_CACHE:-$HOME/.cache/enclave}/kube/<version>/. Quick when
# the binaries for the pinned version are already there; otherwise builds them once
# (tens of minutes on 2 cores the first time; see docs/testing.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec bash hack/kube/build.sh
