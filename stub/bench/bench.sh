#!/usr/bin/env bash
# make bench-runtime: execguard-runtime's own overhead. Times state, kill
# and exec --process through (a) a trivial runtime directly, (b) a
# Docker-style /bin/sh wrapper, (c) execguard-runtime (policy on), and
# (c') execguard-runtime running the runtime through its wrapper file;
# (go) a Go program that only execs the runtime: the floor of any Go
# entry point.
# Runs after `make build` (bin/execguard-runtime).
set -euo pipefail
cd "$(dirname "$0")/../.."
GO=${GO:-go}
ROUNDS=${ROUNDS:-300}

# Same filesystem as /var/lib/execguard: record writes fsync.
work=$(mktemp -d /var/tmp/execguard-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

if command -v gcc >/dev/null && gcc -O2 -static -o "$work/fake" stub/bench/testdata/fake.c 2>/dev/null; then
	fake="static C"
elif command -v gcc >/dev/null && gcc -O2 -o "$work/fake" stub/bench/testdata/fake.c 2>/dev/null; then
	fake="dynamic C"
else
	$GO build -o "$work/fake" ./stub/testdata/fakeruntime
	fake="Go"
fi
CGO_ENABLED=0 $GO build -trimpath -ldflags '-s -w -X github.com/execguard/execguard/stub.viaWrapper=1' \
	-o "$work/execguard-runtime-via-wrapper" ./stub/cmd/execguard-runtime
CGO_ENABLED=0 $GO build -trimpath -ldflags "-s -w -X main.target=$work/fake" -o "$work/gofloor" ./stub/bench/testdata/gofloor
echo "fake runtime: $fake; rounds: $ROUNDS; $(nproc) cpus; load: $(cut -d' ' -f1-3 /proc/loadavg)"
$GO run ./stub/bench -work "$work" -fake "$work/fake" -entry bin/execguard-runtime \
	-entry-wrapper "$work/execguard-runtime-via-wrapper" -go-floor "$work/gofloor" -rounds "$ROUNDS"
