#!/usr/bin/env bash
# Prepares everything the real-containerd e2e tests need, and caches it.
# Idempotent: each step is skipped when its result is already there.
#
#   apt:    runc, busybox-static, asciinema (checks session recordings)
#   $CACHE/bin:    containerd, containerd-shim-runc-v2, ctr (v2.4.2), crictl (v1.34.0)
#   $CACHE/images/e2e.tar:  OCI layout with docker.io/library/busybox:e2e and
#                           registry.k8s.io/pause:3.10.2 (see mkimage/)
#
# CACHE is /var/cache/execguard unless EXECGUARD_CACHE is set. Needs root.
set -euo pipefail

CONTAINERD_VERSION=v2.4.2
CRICTL_VERSION=v1.34.0
CACHE=${EXECGUARD_CACHE:-/var/cache/execguard}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

log() { echo "setup: $*" >&2; }

mkdir -p "$CACHE/bin" "$CACHE/images"

# Debian packages.
missing=()
for p in runc busybox-static asciinema; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null; }
if ((${#missing[@]})); then
	log "apt-get install ${missing[*]}"
	# Update the package lists only when they are missing or stale.
	if ! apt-cache show "${missing[@]}" >/dev/null 2>&1 || ! apt_install; then
		log "apt-get update"
		apt-get update -qq
		apt_install
	fi
fi

# Go-built binaries, each skipped when already in the cache. `go install
# pkg@version` ignores the current module, so run it outside of it.
ctrd=()
for b in containerd containerd-shim-runc-v2 ctr; do
	[[ -x "$CACHE/bin/$b" ]] || ctrd+=("github.com/containerd/containerd/v2/cmd/$b@$CONTAINERD_VERSION")
done
if ((${#ctrd[@]})); then
	log "go install ${ctrd[*]}"
	(cd / && GOBIN="$CACHE/bin" go install "${ctrd[@]}")
fi
if [[ ! -x "$CACHE/bin/crictl" ]]; then
	log "go install sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
	(cd / && GOBIN="$CACHE/bin" go install "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION")
fi

# Test images: rebuilt when the generator or busybox is newer than the tar.
img="$CACHE/images/e2e.tar"
if [[ ! -s "$img" || "$HERE/mkimage/main.go" -nt "$img" || /bin/busybox -nt "$img" ]]; then
	log "building $img"
	(cd "$ROOT" && go run ./test/e2e/mkimage -o "$img")
fi

log "ok: $CACHE"
