#!/bin/sh
# Browser test of the web UI (ui.test.js): installs the pinned playwright-core into a
# scratch copy (the source tree stays clean), then runs the test with Debian's chromium.
# Screenshots go to $OPD_UI_SHOTS (default: $OPD_UI_SHOTS_DEFAULT, which ctest sets to
# build/ui-screenshots, else ./ui-screenshots). Skips, passing, only when chromium is
# missing. The last line of output is "N passed, M failed".
set -u

here=$(cd "$(dirname "$0")" && pwd)
: "${OPAMPD_BIN:?OPAMPD_BIN must point at the opampd binary}"
chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
	echo "0 passed, 0 failed, skipped: $chromium not found (apt-get install chromium, or make deps)"
	exit 0
fi
OPD_UI_SHOTS=${OPD_UI_SHOTS:-${OPD_UI_SHOTS_DEFAULT:-$(pwd)/ui-screenshots}}
export OPAMPD_BIN OPD_UI_SHOTS CHROMIUM="$chromium"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/opd-ui-npm-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM
cp "$here/package.json" "$here/package-lock.json" "$here/ui.test.js" "$here/agents.js" "$tmp/"
if ! (cd "$tmp" && npm ci --no-audit --no-fund --loglevel=error >"$tmp/npm.log" 2>&1); then
	cat "$tmp/npm.log" >&2
	echo "not ok - npm ci (playwright-core)"
	echo "0 passed, 1 failed"
	exit 1
fi
# ui.test.js compares the served app.js with the source: tell it where that is.
OPD_UI_SOURCE=$(cd "$here/../../opampd/ui" && pwd)
export OPD_UI_SOURCE
# Node 20's WebSocket client (for the WebSocket agents) is behind a flag.
(cd "$tmp" && node --experimental-websocket --disable-warning=ExperimentalWarning ui.test.js)
