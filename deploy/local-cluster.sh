#!/bin/sh
# Start a 3-node opampd cluster on this machine (loopback), for trying things
# out: node N serves OpAMP on port PPN0, its admin API on PPN1 and raft on PPN2,
# where PP is $OPAMPD_PORT_PREFIX (default 43: ports 4310..4332). Data lives in
# $OPAMPD_CLUSTER_DIR/nN (default ./cluster-data/nN), with the admin token and a
# ready.json there, so "opampd config list --data-dir cluster-data/n1" works.
# Ctrl-C (or SIGTERM) stops all three and exits 0 if every node stopped cleanly.
#   sh deploy/local-cluster.sh [path/to/opampd]
set -eu
bin=${1:-./build/opampd/opampd}
pp=${OPAMPD_PORT_PREFIX:-43}
dir=${OPAMPD_CLUSTER_DIR:-./cluster-data}

case "$pp" in
[1-5][0-9] | 6[0-4]) ;;
*) echo "local-cluster: OPAMPD_PORT_PREFIX must be two digits, 10 to 64" >&2; exit 2 ;;
esac
if [ ! -x "$bin" ]; then
	echo "local-cluster: $bin is not an executable (build first, or pass the binary's path)" >&2
	exit 2
fi
mkdir -p "$dir"
[ -f "$dir/signing.key" ] || "$bin" keygen "$dir/signing.key"

voters=""
for n in 1 2 3; do
	voters="$voters --voter $n=127.0.0.1:$pp${n}2=http://127.0.0.1:$pp${n}1"
done

pids=""
stop() {
	trap - INT TERM
	status=0
	for p in $pids; do
		kill -TERM "$p" 2>/dev/null || true
	done
	for p in $pids; do
		wait "$p" || status=1
	done
	if [ "$status" -eq 0 ]; then
		echo "local-cluster: all nodes stopped cleanly"
	else
		echo "local-cluster: a node did not exit cleanly (see its log above)" >&2
	fi
	exit "$status"
}
trap stop INT TERM

for n in 1 2 3; do
	mkdir -p "$dir/n$n"
	# shellcheck disable=SC2086
	"$bin" serve --node-id $n --data-dir "$dir/n$n" --signing-key "$dir/signing.key" \
		--opamp-listen 127.0.0.1:$pp${n}0 --admin-listen 127.0.0.1:$pp${n}1 \
		--raft-listen 127.0.0.1:$pp${n}2 --ready-file "$dir/n$n/ready.json" $voters &
	pids="$pids $!"
done
echo "local-cluster: admin APIs on http://127.0.0.1:${pp}11, :${pp}21, :${pp}31" \
	"(tokens in $dir/nN/admin.token)"
# Returns early when a signal arrives (the trap then stops everything), or when every node
# has exited on its own, which is a failure.
wait
echo "local-cluster: every node exited" >&2
exit 1
