#!/bin/sh
# Interop test: start opampd on free ports, run interop.js (@elastic/opamp-client-node)
# against it, always stop the daemon, exit with node's status. The last line of output is
# "N passed, M failed".
set -u

here=$(cd "$(dirname "$0")" && pwd)
bin=${OPAMPD_BIN:?OPAMPD_BIN must point at the opampd binary}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/opd-interop-XXXXXX")
pid=

cleanup() {
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null
		i=0
		while kill -0 "$pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
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

"$bin" serve --data-dir "$tmp/data" --opamp-listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
	--heartbeat-interval 1 --ready-file "$tmp/data/ready.json" 2>"$tmp/opampd.log" &
pid=$!

i=0
while [ ! -s "$tmp/data/ready.json" ] || [ ! -s "$tmp/data/admin.token" ]; do
	if ! kill -0 "$pid" 2>/dev/null; then
		cat "$tmp/opampd.log" >&2
		fail "opampd exited during startup"
	fi
	if [ $i -ge 100 ]; then
		cat "$tmp/opampd.log" >&2
		fail "opampd ready within 10 s"
	fi
	sleep 0.1
	i=$((i + 1))
done

ports=$(node -e 'const j = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
	console.log(j.opamp_port + " " + j.admin_port)' "$tmp/data/ready.json") ||
	fail "parse the ready file"
set -- $ports
token=$(cat "$tmp/data/admin.token")

(cd "$tmp/app" && node interop.js "http://127.0.0.1:$1/v1/opamp" "http://127.0.0.1:$2" "$token")
status=$?
if [ $status -ne 0 ]; then
	echo "---- opampd log (tail) ----" >&2
	tail -n 60 "$tmp/opampd.log" >&2
fi
exit $status
