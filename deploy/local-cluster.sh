#!/bin/sh
# Start a 3-node opampd cluster on this machine (loopback), for trying things
# out: node N serves OpAMP on 43N0, its admin API on 43N1 and raft on 43N2,
# with its data in ./cluster-data/nN. Ctrl-C stops all three.
#   sh deploy/local-cluster.sh [path/to/opampd]
set -eu
bin=${1:-./build/opampd/opampd}
dir=./cluster-data
mkdir -p "$dir"
[ -f "$dir/signing.key" ] || "$bin" keygen "$dir/signing.key"

voters=""
for n in 1 2 3; do
	voters="$voters --voter $n=127.0.0.1:43${n}2=http://127.0.0.1:43${n}1"
done

pids=""
trap 'kill $pids 2>/dev/null; wait' INT TERM EXIT
for n in 1 2 3; do
	# shellcheck disable=SC2086
	"$bin" serve --node-id $n --data-dir "$dir/n$n" --signing-key "$dir/signing.key" \
		--opamp-listen 127.0.0.1:43${n}0 --admin-listen 127.0.0.1:43${n}1 \
		--raft-listen 127.0.0.1:43${n}2 $voters &
	pids="$pids $!"
done
echo "nodes: admin APIs on http://127.0.0.1:4311, :4321, :4331 (tokens in $dir/nN/admin.token)"
wait
