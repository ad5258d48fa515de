#!/bin/sh
# Install every Debian package opampd needs to build, run and test, and nothing
# that is already there. Idempotent; run as root or with sudo available.
# raft 0.22.1 exists only in bookworm-backports, so that suite is added when missing.
set -eu

PKGS="build-essential cmake pkg-config protobuf-c-compiler libprotobuf-c-dev
libuv1-dev libssl-dev libsqlite3-dev libwslay-dev libhttp-parser-dev
libjansson-dev libyaml-dev libcurl4-openssl-dev zlib1g-dev libcmocka-dev
libraft-dev curl"
# The chaos harness (tests/chaos): nft for partitions and packet loss, iptables for the NFQUEUE
# rule of the delay fault, libfaketime for the clock jump, ip and tc for namespaces, slow link.
PKGS="$PKGS nftables iptables libfaketime iproute2"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "setup: need root or sudo to install packages" >&2; exit 1; }
	SUDO=sudo
fi

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
# Node.js runs the interoperability test with a real OpAMP client. Some images ship
# a Node.js build that bundles npm and conflicts with Debian's npm: check commands.
command -v node >/dev/null 2>&1 || missing="$missing nodejs"
command -v npm >/dev/null 2>&1 || missing="$missing npm"
# The web UI test (ui/browser) drives Debian's chromium headless with playwright-core.
[ -x /usr/bin/chromium ] || missing="$missing chromium"
# The deployment tests: systemd-analyze checks deploy/opampd.service (integration/local_cluster).
command -v systemd-analyze >/dev/null 2>&1 || missing="$missing systemd"
# promtool checks /metrics (integration/metrics). Debian's prometheus package is large (about
# 19 MB to download, 96 MB installed): OPD_NO_PROMETHEUS=1 leaves it out, and that test then
# says it skipped the promtool check.
if [ "${OPD_NO_PROMETHEUS:-0}" != 1 ]; then
	command -v promtool >/dev/null 2>&1 || missing="$missing prometheus"
fi
# raft must be the backports 0.22 series: the older bookworm package has another API.
if ! pkg-config --atleast-version=0.22 raft 2>/dev/null; then
	case "$missing" in *libraft-dev*) ;; *) missing="$missing libraft-dev" ;; esac
fi
[ -z "$missing" ] && exit 0

if ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
	echo "setup: adding bookworm-backports" >&2
	echo "deb http://deb.debian.org/debian bookworm-backports main" |
		$SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
fi
echo "setup: installing$missing" >&2
$SUDO apt-get update -qq
rest=$(echo "$missing" | tr ' ' '\n' | grep -v '^libraft-dev$' | tr '\n' ' ')
[ -n "${rest# }" ] && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $rest
case "$missing" in *libraft-dev*)
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports libraft-dev ;;
esac
