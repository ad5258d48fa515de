#!/bin/sh
# `make bench`: install what the benchmarks need and is missing (python3 for the driver, Debian's
# etcd-server and etcd-client for the write comparison), build opampd and the load generator in
# Release mode, then run tests/bench/bench.py, which writes bench/results/*.json and
# bench/README.md. Bounded: about 15 minutes, at most 30. Extra arguments go to bench.py
# (for example --only writes,failover).
#   sh tests/bench/run.sh [BUILD_DIR] [bench.py options]
set -eu
build=${1:-build-bench}
[ $# -gt 0 ] && shift

missing=""
command -v python3 >/dev/null 2>&1 || missing="$missing python3"
command -v etcd >/dev/null 2>&1 || missing="$missing etcd-server"
command -v etcdctl >/dev/null 2>&1 || missing="$missing etcd-client"
if [ -n "$missing" ]; then
	SUDO=""
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	echo "bench: installing$missing" >&2
	$SUDO apt-get update -qq
	# The package's service is not wanted: the benchmark starts its own members.
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target opampd loadgen
exec timeout 1800 python3 tests/bench/bench.py --build "$build" --out bench "$@"
