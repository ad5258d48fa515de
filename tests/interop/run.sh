#!/bin/sh
# Interop test: start opampd on free ports, run interop.js (@elastic/opamp-client-node)
# against it, always stop the daemon, exit with node's status. The last line of output is
# "N passed, M failed".
# With OPD_TEST_CLUSTER=3 it starts a three-node Raft cluster instead (shared signing key,
# fixed raft and admin ports picked free by node), waits for an agreed leader, and points the
# client and the admin calls at node 2, so writes are forwarded to the leader.
set -u

here=$(cd "$(dirname "$0")" && pwd)
bin=${OPAMPD_BIN:?OPAMPD_BIN must point at the opampd binary}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/opd-interop-XXXXXX")
pids=

cleanup() {
	for pid in $pids; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in $pids; do
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "not ok - $1"
	echo "0 passed, 1 failed"
	exit 1
}

# Install the pinned client into a writable copy, so the source tree stays clean.
mkdir -p "$tmp/app" "$tmp/data"
cp "$here/package.json" "$here/package-lock.json" "$here/interop.js" "$tmp/app/"
if ! (cd "$tmp/app" && npm ci --no-audit --no-fund --loglevel=error >"$tmp/npm.log" 2>&1); then
	cat "$tmp/npm.log" >&2
	fail "npm ci"
fi

# Wait at most 10 s for node directory $1 (pid $2) to write its ready file and token.
wait_ready() {
	i=0
	while [ ! -s "$1/ready.json" ] || [ ! -s "$1/admin.token" ]; do
		if ! kill -0 "$2" 2>/dev/null; then
			cat "$1/opampd.log" >&2
			fail "opampd exited during startup"
		fi
		if [ $i -ge 100 ]; then
			cat "$1/opampd.log" >&2
			fail "opampd ready within 10 s"
		fi
		sleep 0.1
		i=$((i + 1))
	done
}

if [ "${OPD_TEST_CLUSTER:-}" = 3 ]; then
	# Raft needs every address before any node starts: pick six free ports at once.
	ports=$(node -e 'const net = require("net");
		const s = [...Array(6)].map(() => net.createServer().listen(0, "127.0.0.1"));
		Promise.all(s.map((x) => new Promise((r) => x.on("listening", r)))).then(() => {
			console.log(s.map((x) => x.address().port).join(" "));
			s.forEach((x) => x.close());
		});') || fail "pick free ports"
	set -- $ports
	[ $# -eq 6 ] || fail "pick free ports"
	raft1=$1 admin1=$2 raft2=$3 admin2=$4 raft3=$5 admin3=$6
	"$bin" keygen "$tmp/signing.key" >/dev/null || fail "opampd keygen"
	voters="--voter 1=127.0.0.1:$raft1=http://127.0.0.1:$admin1"
	voters="$voters --voter 2=127.0.0.1:$raft2=http://127.0.0.1:$admin2"
	voters="$voters --voter 3=127.0.0.1:$raft3=http://127.0.0.1:$admin3"
	for n in 1 2 3; do
		eval raft=\$raft$n admin=\$admin$n
		mkdir -p "$tmp/node$n"
		# shellcheck disable=SC2086 # $voters is a list of flags
		"$bin" serve --data-dir "$tmp/node$n" --node-id $n --raft-listen "127.0.0.1:$raft" \
			--admin-listen "127.0.0.1:$admin" --opamp-listen 127.0.0.1:0 $voters \
			--signing-key "$tmp/signing.key" --heartbeat-interval 1 \
			--ready-file "$tmp/node$n/ready.json" 2>"$tmp/node$n/opampd.log" &
		pids="$pids $!"
	done
	n=1
	for pid in $pids; do
		wait_ready "$tmp/node$n" "$pid"
		n=$((n + 1))
	done
	# Every node must name the same leader, and that node must say it leads (15 s at most).
	node -e 'const fs = require("fs");
		const dirs = process.argv.slice(1);
		const deadline = Date.now() + 15000;
		async function status(d) {
			const port = JSON.parse(fs.readFileSync(d + "/ready.json", "utf8")).admin_port;
			const token = fs.readFileSync(d + "/admin.token", "utf8").trim();
			const r = await fetch(`http://127.0.0.1:${port}/api/v1/cluster`, {
				headers: {Authorization: `Bearer ${token}`},
				signal: AbortSignal.timeout(2000)});
			return r.json();
		}
		(async () => {
			for (;;) {
				const s = await Promise.all(dirs.map((d) => status(d).catch(() => null)));
				const ids = s.map((x) => x && x.leader && x.leader.id);
				const lead = s.find((x) => x && x.role === "leader");
				if (ids[0] && ids.every((id) => id === ids[0]) && lead &&
				    lead.node_id === ids[0]) {
					console.log(`cluster: leader node ${ids[0]}`);
					return;
				}
				if (Date.now() > deadline) {
					console.error("cluster: no agreed leader: " + JSON.stringify(s));
					process.exit(1);
				}
				await new Promise((r) => setTimeout(r, 50));
			}
		})();' "$tmp/node1" "$tmp/node2" "$tmp/node3" || {
		tail -n 40 "$tmp"/node*/opampd.log >&2
		fail "a leader within 15 s"
	}
	data="$tmp/node2"
else
	"$bin" serve --data-dir "$tmp/data" --opamp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
		--heartbeat-interval 1 --ready-file "$tmp/data/ready.json" 2>"$tmp/data/opampd.log" &
	pids=$!
	wait_ready "$tmp/data" "$pids"
	data="$tmp/data"
fi

ports=$(node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
	console.log(j.opamp_port + " " + j.admin_port)' "$data/ready.json") ||
	fail "parse the ready file"
set -- $ports
token=$(cat "$data/admin.token")

(cd "$tmp/app" && node interop.js "http://127.0.0.1:$1/v1/opamp" "http://127.0.0.1:$2" "$token")
status=$?
if [ $status -ne 0 ]; then
	for log in "$tmp"/data/opampd.log "$tmp"/node*/opampd.log; do
		[ -f "$log" ] || continue
		echo "---- $log (tail) ----" >&2
		tail -n 60 "$log" >&2
	done
fi
exit $status
