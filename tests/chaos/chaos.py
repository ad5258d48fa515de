#!/usr/bin/env python3
"""Chaos campaigns for opampd clusters in network namespaces (tests/chaos/README.md).

Starts 3 or 5 real opampd nodes, each in its own network namespace joined by a veth pair to a
bridge in a hub namespace, simulated agents next to every node (chaos_agent), and from a client
namespace a writer that publishes versions with Idempotency-Keys, pollers of GET /api/v1/cluster
and write probes. Then injects faults chosen from a printed seed, heals, waits for convergence
(every wait bounded), and finally checks everything recorded. Python 3 standard library only;
needs root, `ip` (iproute2) and `nft` (nftables); `faketime` for the clock fault.

Exit status: 0 no violation, 1 violations, 2 harness error, 77 cannot run here (reason printed).
"""

import argparse
import collections
import ctypes
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time

SKIP = 77
CLONE_NEWNET = 0x40000000
OPAMP_PORT = 4320
ADMIN_PORT = 4321
RAFT_PORT = 4322
FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
WRITE_NAMES = ["w0", "w1", "w2"]
PROBE_NAME = "probe"
TOKEN = secrets.token_hex(32)  # the admin token of every node of this run

_libc = ctypes.CDLL(None, use_errno=True)


def now():
    return time.monotonic()


def sh(args, check=True, inp=None, timeout=20):
    """Run a command, bounded; returns (rc, stdout+stderr)."""
    try:
        p = subprocess.run(args, input=inp, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        if check:
            raise RuntimeError("timed out: %s" % " ".join(args))
        return 124, "timeout"
    out = (p.stdout or "") + (p.stderr or "")
    if check and p.returncode != 0:
        raise RuntimeError("%s: rc %d: %s" % (" ".join(args), p.returncode, out.strip()))
    return p.returncode, out


def enter_netns(name):
    """Move the calling thread (only it: network namespaces are per thread) into netns name."""
    fd = os.open("/run/netns/" + name, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns %s: %s" % (name, os.strerror(e)))
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Topology: names all start with the prefix (chx<slot>) so a stale run can be cleaned first.


class Topology:
    def __init__(self, slot, n_nodes, workdir):
        # Namespaces are per run (their addresses never meet): only the names must differ.
        self.prefix = "chx-" + slot
        self.n = n_nodes
        self.workdir = workdir
        self.hub = self.prefix + "-hub"
        self.cli = self.prefix + "-cli"
        self.subnet = "10.77.0"

    def ns(self, i):
        return "%s-n%d" % (self.prefix, i)

    def ip(self, i):
        return "%s.%d" % (self.subnet, 10 + i)

    @property
    def cli_ip(self):
        return self.subnet + ".100"

    def setup(self):
        cleanup(self.prefix, self.workdir)
        sh(["ip", "netns", "add", self.hub])
        sh(["ip", "-n", self.hub, "link", "set", "lo", "up"])
        sh(["ip", "-n", self.hub, "link", "add", "br0", "type", "bridge"])
        sh(["ip", "-n", self.hub, "link", "set", "br0", "up"])
        members = [(self.ns(i), self.ip(i), "v%d" % i) for i in range(1, self.n + 1)]
        members.append((self.cli, self.cli_ip, "vc"))
        for ns, ip, port in members:
            sh(["ip", "netns", "add", ns])
            sh(["ip", "-n", self.hub, "link", "add", port, "type", "veth", "peer", "name",
                "eth0", "netns", ns])
            sh(["ip", "-n", self.hub, "link", "set", port, "master", "br0", "up"])
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
            sh(["ip", "-n", ns, "addr", "add", ip + "/24", "dev", "eth0"])
            sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
        for i in range(1, self.n + 1):
            self.nft(i, "add table inet chaos\n"
                     "add chain inet chaos input { type filter hook input priority 0; }\n"
                     "add chain inet chaos output { type filter hook output priority 0; }\n")

    def nft(self, i, script):
        sh(["ip", "netns", "exec", self.ns(i), "nft", "-f", "-"], inp=script)

    def heal(self, i):
        self.nft(i, "flush chain inet chaos input\nflush chain inet chaos output\n")
        sh(["ip", "netns", "exec", self.ns(i), "tc", "qdisc", "del", "dev", "eth0", "root"],
           check=False)
        if shutil.which("iptables-nft"):
            sh(["ip", "netns", "exec", self.ns(i), "iptables-nft", "-F", "OUTPUT"], check=False)

    def cut(self, i, others):
        """Drop every packet between node i and the nodes in others (both ways)."""
        if not others:
            return
        s = "{ %s }" % ", ".join(self.ip(o) for o in others)
        self.nft(i, "add rule inet chaos input ip saddr %s drop\n"
                 "add rule inet chaos output ip daddr %s drop\n" % (s, s))

    def loss_out(self, i, pct):
        """One-way: drop pct %% of what node i sends to its peers."""
        peers = "{ %s }" % ", ".join(self.ip(o) for o in range(1, self.n + 1) if o != i)
        self.nft(i, "add rule inet chaos output ip daddr %s numgen random mod 100 < %d drop\n"
                 % (peers, pct))

    def slow_out(self, i, rate_kbit, latency_ms):
        """
        One-way: what node i sends to its peers goes through a token bucket (rate_kbit) whose
        queue holds latency_ms of traffic, so packets wait up to that long and the excess is
        dropped. The kernel here has no netem; this is the delay fault it can do. The client
        network is not slowed (htb class 1:1), only peer traffic (class 1:2).
        """
        ns = self.ns(i)
        tc = ["ip", "netns", "exec", ns, "tc"]
        sh(tc + ["qdisc", "add", "dev", "eth0", "root", "handle", "1:", "htb", "default", "1"])
        sh(tc + ["class", "add", "dev", "eth0", "parent", "1:", "classid", "1:1", "htb", "rate",
                 "1gbit"])
        sh(tc + ["class", "add", "dev", "eth0", "parent", "1:", "classid", "1:2", "htb", "rate",
                 "100mbit"])
        sh(tc + ["qdisc", "add", "dev", "eth0", "parent", "1:2", "handle", "20:", "tbf", "rate",
                 "%dkbit" % rate_kbit, "burst", "3000", "latency", "%dms" % latency_ms])
        for o in range(1, self.n + 1):
            if o != i:
                sh(tc + ["filter", "add", "dev", "eth0", "parent", "1:", "protocol", "ip",
                         "prio", "1", "u32", "match", "ip", "dst", self.ip(o) + "/32",
                         "flowid", "1:2"])


class Delayer:
    """
    One-way delay without netem (this kernel has none): an iptables NFQUEUE rule in the node's
    namespace hands every packet it sends to its peers to this thread, which gives the kernel
    its ACCEPT verdict `delay` seconds later (nfnetlink_queue, metadata only, packets in order).
    """

    NFNL_QUEUE = 3 << 8
    MSG_PACKET, MSG_VERDICT, MSG_CONFIG = 0, 1, 2

    def __init__(self, ns, delay, peers, queue=7):
        self.ns, self.delay, self.peers, self.queue = ns, delay, peers, queue
        self.delayed = 0
        self.errors = 0
        self.halt = threading.Event()
        self.ready = threading.Event()
        self.failed = None
        self.thread = None

    def msg(self, mtype, attrs, flags=1):
        import struct
        body = struct.pack("=BB", 0, 0) + struct.pack("!H", self.queue)
        for atype, payload in attrs:
            a = struct.pack("=HH", 4 + len(payload), atype) + payload
            body += a + b"\0" * (-len(a) % 4)
        return struct.pack("=IHHII", 16 + len(body), self.NFNL_QUEUE | mtype, flags, 0, 0) + body

    def start(self):
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        if not self.ready.wait(5) or self.failed:
            raise RuntimeError("delayer in %s: %s" % (self.ns, self.failed))
        rule = ["-d", ",".join(self.peers), "-j", "NFQUEUE", "--queue-num", str(self.queue)]
        sh(["ip", "netns", "exec", self.ns, "iptables-nft", "-A", "OUTPUT"] + rule)

    def stop(self):
        """Stop queueing, let what is queued out on time, then close."""
        sh(["ip", "netns", "exec", self.ns, "iptables-nft", "-F", "OUTPUT"], check=False)
        time.sleep(self.delay + 0.1)
        self.halt.set()
        self.thread.join(5)

    def run(self):
        import heapq
        import select
        import socket
        import struct
        try:
            enter_netns(self.ns)
            sk = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)  # NETLINK_NETFILTER
            sk.bind((0, 0))
            sk.send(self.msg(self.MSG_CONFIG, [(1, struct.pack("!BxH", 1, socket.AF_INET))],
                             5))
            sk.send(self.msg(self.MSG_CONFIG, [(2, struct.pack("!IB", 0, 1)),
                                               (3, struct.pack("!I", 8192))], 5))
        except OSError as e:
            self.failed = str(e)
            self.ready.set()
            return
        self.ready.set()
        due = []
        with sk:
            while not self.halt.is_set():
                wait = max(0.0, min(0.05, due[0][0] - now())) if due else 0.05
                r, _, _ = select.select([sk], [], [], wait)
                if r:
                    data = sk.recv(65536)
                    off = 0
                    while off + 16 <= len(data):
                        ln, mtype = struct.unpack_from("=IH", data, off)
                        if ln < 16:
                            break
                        if mtype == self.NFNL_QUEUE | self.MSG_PACKET:
                            a = off + 20
                            while a + 4 <= off + ln:
                                alen, atype = struct.unpack_from("=HH", data, a)
                                if alen < 4:
                                    break
                                if atype & 0x7fff == 1:  # NFQA_PACKET_HDR
                                    pid = struct.unpack_from("!I", data, a + 4)[0]
                                    heapq.heappush(due, (now() + self.delay, pid))
                                    self.delayed += 1
                                a += (alen + 3) & ~3
                        elif mtype == 2:  # NLMSG_ERROR: an ack (0) or an error
                            if struct.unpack_from("=i", data, off + 16)[0] != 0:
                                self.errors += 1
                        off += (ln + 3) & ~3
                while due and due[0][0] <= now():
                    _, pid = heapq.heappop(due)
                    sk.send(self.msg(self.MSG_VERDICT, [(2, struct.pack("!II", 1, pid))]))


def cleanup(prefix, workdir):
    """Kill whatever runs in our namespaces, unmount our tmpfs, delete the namespaces."""
    rc, out = sh(["ip", "netns", "list"], check=False)
    names = [line.split()[0] for line in out.splitlines() if line.startswith(prefix + "-")]
    for ns in names:
        _, pids = sh(["ip", "netns", "pids", ns], check=False)
        for p in pids.split():
            if p.isdigit() and int(p) != os.getpid():
                try:
                    os.kill(int(p), signal.SIGCONT)
                    os.kill(int(p), signal.SIGKILL)
                except OSError:
                    pass
    if names:
        time.sleep(0.2)
    base = os.path.realpath(workdir) + "/"
    try:
        with open("/proc/mounts") as f:
            mounts = [line.split()[1] for line in f]
    except OSError:
        mounts = []
    for m in reversed(mounts):
        if m.startswith(base):
            sh(["umount", "-l", m], check=False)
    for ns in names:
        sh(["ip", "netns", "del", ns], check=False)


def start_guardian(prefix, workdir):
    """
    A forked process that cleans up if this one dies without doing it (SIGKILL from ctest's
    timeout included): it waits for EOF on a pipe only we hold, then checks a marker file.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            os.close(w)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while os.read(r, 1):
                pass
            if not os.path.exists(os.path.join(workdir, "cleaned")):
                cleanup(prefix, workdir)
        finally:
            os._exit(0)
    os.close(r)
    return w


# ---------------------------------------------------------------------------------------------
# HTTP from the client namespace.


def api(ip, method, path, body=None, headers=None, timeout=2.0):
    """Returns (status or None, parsed JSON or error text, seconds)."""
    t0 = now()
    h = {"Authorization": "Bearer " + TOKEN}
    if headers:
        h.update(headers)
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection(ip, ADMIN_PORT, timeout=timeout)
    try:
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        raw = r.read(64 * 1024 * 1024)
        try:
            j = json.loads(raw) if raw else None
        except ValueError:
            j = raw[:200].decode(errors="replace")
        return r.status, j, now() - t0
    except (OSError, http.client.HTTPException) as e:
        return None, "%s: %s" % (type(e).__name__, e), now() - t0
    finally:
        conn.close()


def err_code(j):
    if isinstance(j, dict) and isinstance(j.get("error"), dict):
        return j["error"].get("code")
    return None


# ---------------------------------------------------------------------------------------------
# Nodes.


class Node:
    def __init__(self, c, i):
        self.c = c
        self.i = i
        self.dir = os.path.join(c.workdir, "n%d" % i)
        self.data = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "opampd.log")
        self.agent_log = os.path.join(self.dir, "agents.log")
        self.faketime_rc = os.path.join(self.dir, "faketime.rc")
        self.proc = None
        self.agent = None
        self.starts = 0
        self.expected_exit = False
        self.stopped = False
        self.disk_full_cycle = None
        self.filled = False
        self.crashes = 0
        self.agent_log_off = 0
        self.agent_last = {}
        os.makedirs(self.data, exist_ok=True)
        sh(["mount", "-t", "tmpfs", "-o", "size=%dm,mode=0700" % c.args.tmpfs_mb, "tmpfs",
            self.data])
        with open(os.path.join(self.data, "admin.token"), "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(os.path.join(self.data, "admin.token"), 0o600)
        with open(self.faketime_rc, "w") as f:
            f.write("+0\n")

    def argv(self):
        c = self.c
        a = ["ip", "netns", "exec", c.topo.ns(self.i), "env"]
        if c.faketime:
            a += ["LD_PRELOAD=" + FAKETIME_LIB, "FAKETIME_TIMESTAMP_FILE=" + self.faketime_rc,
                  "FAKETIME_DONT_FAKE_MONOTONIC=1", "FAKETIME_CACHE_DURATION=1"]
        a += [c.args.opampd, "serve", "--data-dir", self.data, "--node-id", str(self.i),
              "--raft-listen", "%s:%d" % (c.topo.ip(self.i), RAFT_PORT),
              "--admin-listen", "%s:%d" % (c.topo.ip(self.i), ADMIN_PORT),
              "--opamp-listen", "127.0.0.1:%d" % OPAMP_PORT,
              "--signing-key", c.key_path, "--heartbeat-interval", "1",
              # The checker needs every acknowledged version still in the store.
              "--config-history", "0",
              "--ready-file", os.path.join(self.dir, "ready.json")]
        for v in range(1, c.n + 1):
            a += ["--voter", "%d=%s:%d=http://%s:%d" % (v, c.topo.ip(v), RAFT_PORT,
                                                       c.topo.ip(v), ADMIN_PORT)]
        return a

    def start(self):
        try:
            os.unlink(os.path.join(self.dir, "ready.json"))
        except OSError:
            pass
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(b"=== chaos: start %d at %.3f\n" % (self.starts, now() - self.c.t0))
        log.flush()
        # `ip netns exec` and `env` exec in place: the pid is opampd's.
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        self.expected_exit = False
        self.stopped = False

    def wait_ready(self, timeout):
        path = os.path.join(self.dir, "ready.json")
        end = now() + timeout
        while now() < end:
            if os.path.exists(path):
                return True
            if self.proc.poll() is not None:
                return False
            time.sleep(0.05)
        return False

    def start_agents(self):
        c = self.c
        out = open(self.agent_log, "ab")
        self.agent = subprocess.Popen(
            ["ip", "netns", "exec", c.topo.ns(self.i), c.args.agent, str(OPAMP_PORT),
             str(c.args.agents), c.pubkey, str(int(c.args.max_seconds) + 60)],
            stdout=out, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        out.close()

    def kill(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            if sig == signal.SIGKILL:
                self.expected_exit = True
                if self.stopped:
                    os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, sig)
            if sig == signal.SIGSTOP:
                self.stopped = True
            elif sig == signal.SIGCONT:
                self.stopped = False

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


# ---------------------------------------------------------------------------------------------
# The campaign.


class Campaign:
    def __init__(self, args):
        self.args = args
        self.n = args.nodes
        self.workdir = os.path.realpath(args.workdir)
        self.topo = Topology(args.slot, self.n, self.workdir)
        self.rng = random.Random(args.seed)
        self.t0 = now()
        self.lock = threading.RLock()
        self.stop_all = threading.Event()
        self.writer_pause = threading.Event()
        self.writer_idle = threading.Event()
        self.nodes = {}
        self.violations = []
        self.faults = collections.Counter()
        self.fault_log = []
        self.acks = []  # every 201: dict(name, version, hash, key, node, t)
        self.ack_by_key = {}
        self.attempts = collections.Counter()
        self.unknown_keys = []
        self.samples = collections.defaultdict(set)  # term -> node ids seen as leader
        self.claims = collections.defaultdict(set)  # term -> leader ids claimed by others
        self.last_status = {}
        self.ro_bounds = []  # (cycle, node, seconds from cut to first 503 read_only)
        self.majority_avail = []  # seconds from cut to the majority's first 201
        self.majority_avail_new_leader = []  # the same when the leader was cut off
        self.majority_no_ack = []  # cycles whose majority accepted nothing during the hold
        self.convergence = []
        self.digest_checks = 0
        self.faketime = False
        self.key_seq = 0
        self.cycle_no = 0
        self.aborted = False
        self.failstops = []  # nodes that exited on their own on a full disk
        self.errors_logged = collections.Counter()  # node log errors, numbers masked
        self.agent_lag = []  # per cycle: seconds until every agent had the newest versions

    # --- recording ---------------------------------------------------------------------------

    def violation(self, what):
        t = now() - self.t0
        with self.lock:
            self.violations.append("t=%.1fs %s" % (t, what))
        print("VIOLATION t=%.1fs %s" % (t, what), flush=True)

    def log(self, msg):
        print("[%7.1fs] %s" % (now() - self.t0, msg), flush=True)

    # --- setup -------------------------------------------------------------------------------

    def setup(self):
        a = self.args
        os.makedirs(self.workdir, exist_ok=True)
        self.guardian = start_guardian(self.topo.prefix, self.workdir)
        for name in os.listdir(self.workdir):
            p = os.path.join(self.workdir, name)
            if name.startswith("n") and os.path.isdir(p):
                sh(["umount", "-l", os.path.join(p, "data")], check=False)
                shutil.rmtree(p, ignore_errors=True)
        try:
            os.unlink(os.path.join(self.workdir, "cleaned"))
        except OSError:
            pass
        self.topo.setup()
        self.key_path = os.path.join(self.workdir, "signing.key")
        if os.path.exists(self.key_path):
            os.unlink(self.key_path)
        sh([a.opampd, "keygen", self.key_path])
        self.faketime = os.path.exists(FAKETIME_LIB) and not sanitized(a.opampd)
        for i in range(1, self.n + 1):
            self.nodes[i] = Node(self, i)
        for nd in self.nodes.values():
            nd.start()
        for nd in self.nodes.values():
            if not nd.wait_ready(30):
                raise RuntimeError("node %d not ready:\n%s" % (nd.i, tail(nd.log_path)))
        self.threads = []
        # From here on this thread lives in the client namespace (the others enter it too);
        # `ip netns exec`, `ip -n` and mount work from any namespace.
        enter_netns(self.topo.cli)
        self.setup_client()

    def spawn(self, fn, *args):
        def run():
            enter_netns(self.topo.cli)
            try:
                fn(*args)
            except Exception as e:  # a harness bug must not pass silently
                self.violation("harness thread %s died: %r" % (fn.__name__, e))
        t = threading.Thread(target=run, daemon=True)
        t.start()
        self.threads.append(t)
        return t

    def setup_client(self):
        """In the client netns: wait for a leader, fetch the public key, start agents."""
        if self.wait_converged(60) is None:
            raise RuntimeError("no leader at start")
        # The leader registers its key through the log shortly after it is elected.
        end = now() + 30
        while True:
            st, j, _ = api(self.topo.ip(1), "GET", "/api/v1/signing-keys")
            if st == 200 and j.get("keys"):
                break
            if now() > end:
                raise RuntimeError("signing-keys: %s %s" % (st, j))
            time.sleep(0.2)
        self.pubkey = j["keys"][0]["public_key"]

    # --- cluster status ----------------------------------------------------------------------

    def status(self, i, timeout=1.0):
        st, j, _ = api(self.topo.ip(i), "GET", "/api/v1/cluster", timeout=timeout)
        if st != 200 or not isinstance(j, dict):
            return None
        self.note_status(i, j)
        return j

    def digest(self, i, timeout=2.0):
        """GET /api/v1/cluster/digest: the store digest and the applied index it was taken at."""
        st, j, _ = api(self.topo.ip(i), "GET", "/api/v1/cluster/digest", timeout=timeout)
        return j if st == 200 and isinstance(j, dict) else None

    def note_status(self, i, j):
        term = j.get("term")
        leader = (j.get("leader") or {}).get("id")
        with self.lock:
            self.last_status[i] = j
            if j.get("role") == "leader" and i not in self.samples[term]:
                self.samples[term].add(i)
                if len(self.samples[term]) > 1:
                    self.violation("two leaders in term %s: %s"
                                   % (term, sorted(self.samples[term])))
            if leader:
                self.claims[term].add(leader)

    def poller(self, i):
        while not self.stop_all.is_set():
            self.status(i)
            time.sleep(self.args.poll_interval)

    def wait_converged(self, timeout):
        """One leader that every node names, in one term, and no node read-only."""
        end = now() + timeout
        while now() < end and not self.stop_all.is_set():
            self.check_processes("cycle %d" % self.cycle_no)
            sts = {i: self.status(i) for i in self.nodes}
            if all(sts.values()):
                leaders = [i for i, s in sts.items() if s["role"] == "leader"]
                terms = {s["term"] for s in sts.values()}
                named = {(s.get("leader") or {}).get("id") for s in sts.values()}
                if (len(leaders) == 1 and len(terms) == 1 and named == {leaders[0]} and
                        not any(s["read_only"] for s in sts.values())):
                    return leaders[0]
            time.sleep(0.1)
        return None

    def check_digests(self, timeout, where):
        """With writes paused: equal applied indexes must mean equal digests."""
        end = now() + timeout
        last = None
        while now() < end:
            sts = {i: self.status(i) for i in self.nodes}
            dgs = {i: self.digest(i) for i in self.nodes}
            if all(sts.values()) and all(dgs.values()):
                # The digest call reports the applied index its dump was taken at.
                applied = {d["applied_index"] for d in dgs.values()}
                last = {i: (d["applied_index"], sts[i]["commit_index"], d["store_digest"][:12])
                        for i, d in dgs.items()}
                if len(applied) == 1:
                    digests = {d["store_digest"] for d in dgs.values()}
                    if len(digests) != 1 or "" in digests:
                        self.violation("%s: store digests differ at applied index %s: %s"
                                       % (where, applied.pop(), last))
                        return False
                    self.digest_checks += 1
                    bad = {i: s.get("unverified_versions") for i, s in sts.items()
                           if s.get("unverified_versions")}
                    if bad:
                        self.violation("%s: nodes refuse versions (unverified_versions): %s"
                                       % (where, bad))
                    return True
            time.sleep(0.1)
        self.violation("%s: replicas did not reach the same applied index within %.0fs: %s"
                       % (where, timeout, last))
        return False

    # --- writer ------------------------------------------------------------------------------

    def next_key(self, kind):
        with self.lock:
            self.key_seq += 1
            return "s%d-%s%d" % (self.args.seed, kind, self.key_seq)

    def publish(self, node, name, key, selector):
        body = {"files": {"collector.yaml": {"content_type": "text/yaml",
                                             "body": "# %s\nreceivers:\n  otlp: {}\n" % key}},
                "selector": selector, "message": key}
        st, j, dt = api(self.topo.ip(node), "POST", "/api/v1/configs/" + name, body,
                         {"Idempotency-Key": key}, timeout=self.args.write_timeout)
        with self.lock:
            self.attempts["%s" % st if st is not None else "no answer"] += 1
        return st, j, dt

    def record_ack(self, name, key, node, j, t_send):
        ack = {"name": name, "version": j.get("version"), "hash": j.get("config_hash"),
               "key": key, "node": node, "t": round(t_send - self.t0, 3),
               "dup": bool(j.get("duplicate"))}
        with self.lock:
            first = self.ack_by_key.setdefault(key, ack)
            if (first["version"], first["hash"]) != (ack["version"], ack["hash"]):
                self.violation("key %s acknowledged twice differently: %s vs %s"
                               % (key, first, ack))
            self.acks.append(ack)

    def writer(self):
        wrng = random.Random(self.args.seed * 7 + 1)
        k = 0
        while not self.stop_all.is_set():
            if self.writer_pause.is_set():
                self.writer_idle.set()
                time.sleep(0.05)
                continue
            self.writer_idle.clear()
            name = WRITE_NAMES[k % len(WRITE_NAMES)]
            sel = {"service.name": "svc%d" % (k % len(WRITE_NAMES))}
            k += 1
            key = self.next_key("w")
            node = wrng.randint(1, self.n)
            deadline = now() + self.args.write_retry_s
            acked = False
            while now() < deadline and not self.stop_all.is_set():
                t_send = now()
                st, j, _ = self.publish(node, name, key, sel)
                if st == 201:
                    self.record_ack(name, key, node, j, t_send)
                    acked = True
                    break
                if st is not None and st not in (503,):
                    self.violation("write %s on node %d answered %s: %s" % (key, node, st, j))
                    break
                # 503 or no answer: the outcome is unknown; retry the same key elsewhere.
                node = node % self.n + 1
                time.sleep(0.1)
            if not acked:
                with self.lock:
                    self.unknown_keys.append(key)
            time.sleep(self.args.write_interval)
        self.writer_idle.set()

    # --- partitions and the read-only probes -------------------------------------------------

    def probe_once(self, node, side, part, res):
        key = self.next_key("p")
        t_send = now()
        st, j, _ = self.publish(node, PROBE_NAME, key, {"service.name": "none"})
        t_recv = now()
        with self.lock:
            tr = part["trace"].setdefault(node, []) if side == "minority" else []
            if side == "minority" and len(tr) < 4:
                tr.append("%.2f+%.2fs:%s%s" % (t_send - part["t_cut"], t_recv - t_send, st,
                                               "/" + err_code(j) if err_code(j) else ""))
        if st == 201:
            self.record_ack(PROBE_NAME, key, node, j, t_send)
            if side == "minority" and not part["healed"].is_set():
                self.violation("cycle %d: minority node %d acknowledged write %s during the "
                               "partition" % (part["cycle"], node, key))
            with self.lock:
                if res["ack"] is None or t_recv - part["t_cut"] < res["ack"]:
                    res["ack"] = t_recv - part["t_cut"]
        elif st == 503 and err_code(j) == "read_only" and side == "minority" and \
                not part["healed"].is_set():
            with self.lock:
                if res["ro"] is None or t_recv - part["t_cut"] < res["ro"]:
                    res["ro"] = t_recv - part["t_cut"]
                    part["why"] = j["error"].get("message", "")[:90]

    def prober(self, node, side, part):
        """
        During a partition: a new write to one node every 100 ms, each on its own thread so
        that one held write (an isolated leader waits for a commit that cannot come) does not
        hide when the node turns read-only. The minority must answer 503 read_only, fast; the
        majority side records when it first accepts a write.
        """
        res = {"ro": None, "ack": None}
        ts = []
        while not part["healed"].is_set() and not self.stop_all.is_set() and len(ts) < 100:
            if side == "majority" and res["ack"] is not None:
                break
            t = threading.Thread(target=self.in_client_ns,
                                 args=(self.probe_once, node, side, part, res), daemon=True)
            t.start()
            ts.append(t)
            part["healed"].wait(0.1)
        for t in ts:
            t.join(self.args.write_timeout + 2)
        with self.lock:
            if side == "minority":
                part["ro"][node] = res["ro"]
            else:
                part["ack"][node] = res["ack"]

    def in_client_ns(self, fn, *args):
        enter_netns(self.topo.cli)
        fn(*args)

    # --- faults ------------------------------------------------------------------------------

    def pick_fault(self):
        kinds = self.args.faults.split(",")
        if not self.faketime and "clock" in kinds:
            kinds.remove("clock")
        if shutil.which("iptables-nft") is None and "delay" in kinds:
            kinds.remove("delay")
        return self.rng.choice(kinds)

    def leader_now(self):
        with self.lock:
            for i, s in self.last_status.items():
                if s.get("role") == "leader":
                    return i
        return None

    def pick_node(self, leader):
        """The leader or a random node: both decisions come from the seed."""
        if self.rng.random() < 0.5 and leader:
            return leader, "leader"
        return self.rng.randint(1, self.n), "random"

    def run_partition(self, cycle, minority, hold, leader_isolated):
        majority = [i for i in self.nodes if i not in minority]
        part = {"cycle": cycle, "healed": threading.Event(), "ro": {}, "ack": {},
                "t_cut": now(), "why": "", "trace": {}}
        # t_cut is taken before the first rule goes in: the bound includes installing them.
        for i in minority:
            self.topo.cut(i, majority)
        for i in majority:
            self.topo.cut(i, minority)
        probes = [self.spawn(self.prober, i, "minority", part) for i in minority]
        probes += [self.spawn(self.prober, i, "majority", part) for i in majority[:1]]
        time.sleep(hold)
        part["healed"].set()
        for i in self.nodes:
            self.topo.heal(i)
        for t in probes:
            t.join(self.args.write_timeout + 2)
        for i in minority:
            b = part["ro"].get(i)
            if b is None:
                self.violation("cycle %d: minority node %d never answered 503 read_only in "
                               "%.1fs of partition" % (cycle, i, hold))
            else:
                self.ro_bounds.append((cycle, i, b))
                if b > self.args.ro_bound:
                    self.violation("cycle %d: minority node %d answered read_only only after "
                                   "%.2fs (bound %.1fs)" % (cycle, i, b, self.args.ro_bound))
        for i, b in part["ack"].items():
            if b is not None:
                (self.majority_avail_new_leader if leader_isolated
                 else self.majority_avail).append(b)
            elif leader_isolated:
                # Not a violation: an election can take two rounds of 1-2 s (randomized
                # timeouts, a split vote). Convergence after the heal is checked.
                self.majority_no_ack.append(cycle)
        return "ro=%s first: %r; minority answers %s" % (
            {i: (round(b, 2) if b is not None else None) for i, b in part["ro"].items()},
            part["why"], part["trace"])

    def fill_disk(self, nd):
        path = os.path.join(nd.data, "chaos-fill")
        chunk = b"\0" * (1 << 20)
        n = 0
        with open(path, "wb", buffering=0) as f:
            for size in (1 << 20, 4096, 1):
                buf = chunk[:size]
                while n < (1 << 34):
                    try:
                        f.write(buf)
                        n += size
                    except OSError:
                        break
        return path, n

    def run_fault(self, cycle, kind):
        leader = self.leader_now()
        hold = self.rng.uniform(self.args.hold_min, self.args.hold_max)
        detail = ""
        if kind in ("partition", "isolate_leader"):
            hold = max(hold, self.args.ro_bound + 1.0)
            if kind == "isolate_leader" and leader:
                minority = [leader]
                hold += 1.5  # long enough for the majority's election, most of the time
            else:
                size = self.rng.randint(1, (self.n - 1) // 2)
                minority = sorted(self.rng.sample(range(1, self.n + 1), size))
            detail = "minority=%s leader=%s " % (minority, leader)
            detail += self.run_partition(cycle, minority, hold, leader in minority)
        elif kind == "loss":
            i, how = self.pick_node(leader)
            pct = self.rng.choice([20, 40, 60, 80])
            self.topo.loss_out(i, pct)
            time.sleep(hold)
            self.topo.heal(i)
            detail = "node=%d(%s) out-loss=%d%%" % (i, how, pct)
        elif kind == "delay":
            i, how = self.pick_node(leader)
            ms = self.rng.choice([50, 150, 300, 600])
            peers = [self.topo.ip(o) for o in self.nodes if o != i]
            d = Delayer(self.topo.ns(i), ms / 1000.0, peers)
            d.start()
            time.sleep(hold)
            d.stop()
            detail = "node=%d(%s) out-delay=%dms (%d packets delayed)" % (i, how, ms, d.delayed)
        elif kind == "slow":
            i, how = self.pick_node(leader)
            rate = self.rng.choice([8, 16, 32, 64])
            lat = self.rng.choice([200, 500, 1000])
            self.topo.slow_out(i, rate, lat)
            time.sleep(hold)
            self.topo.heal(i)
            detail = "node=%d(%s) out-rate=%dkbit queue=%dms" % (i, how, rate, lat)
        elif kind == "kill":
            i, how = self.pick_node(leader)
            nd = self.nodes[i]
            nd.kill(signal.SIGKILL)
            nd.proc.wait(10)
            down = self.rng.uniform(0.2, 2.0)
            time.sleep(down)
            nd.start()
            if not nd.wait_ready(20):
                self.violation("cycle %d: node %d did not restart: %s" % (cycle, i,
                                                                         tail(nd.log_path)))
            detail = "node=%d(%s) down=%.1fs" % (i, how, down)
        elif kind == "stop":
            i, how = self.pick_node(leader)
            nd = self.nodes[i]
            nd.kill(signal.SIGSTOP)
            time.sleep(hold)
            nd.kill(signal.SIGCONT)
            detail = "node=%d(%s) stopped=%.1fs" % (i, how, hold)
        elif kind == "disk_full":
            i, how = self.pick_node(leader)
            nd = self.nodes[i]
            nd.disk_full_cycle = cycle
            nd.filled = True
            path, n = self.fill_disk(nd)
            time.sleep(hold)
            os.unlink(path)
            nd.filled = False
            self.check_processes("cycle %d" % cycle)
            detail = "node=%d(%s) filled=%dMiB" % (i, how, n >> 20)
        elif kind == "clock":
            i, how = self.pick_node(leader)
            off = self.rng.choice([-1, 1]) * self.rng.randint(30, 3600)
            with open(self.nodes[i].faketime_rc + ".tmp", "w") as f:
                f.write("%+ds\n" % off)
            os.rename(self.nodes[i].faketime_rc + ".tmp", self.nodes[i].faketime_rc)
            time.sleep(hold)
            with open(self.nodes[i].faketime_rc + ".tmp", "w") as f:
                f.write("+0\n")
            os.rename(self.nodes[i].faketime_rc + ".tmp", self.nodes[i].faketime_rc)
            detail = "node=%d(%s) wall-clock %+ds for %.1fs, then back" % (i, how, off, hold)
        else:
            raise RuntimeError("unknown fault " + kind)
        return "%s hold=%.1fs %s" % (kind, hold, detail)

    def check_processes(self, where):
        """A node that exits unless killed is a violation, except a fail-stop on a full disk."""
        for nd in self.nodes.values():
            if nd.proc is None or nd.proc.poll() is None or nd.expected_exit:
                continue
            t = tail(nd.log_path, 6)
            if nd.disk_full_cycle == self.cycle_no and ("disk is full" in t or
                                                        "No space left" in t):
                if nd.filled:
                    continue  # restarted once the disk has room again
                self.failstops.append("cycle %d node %d: %s" % (
                    self.cycle_no, nd.i, t.strip().splitlines()[-1][:160]))
                self.log("node %d stopped itself on the full disk (exit %s); restarting"
                         % (nd.i, nd.proc.returncode))
            else:
                self.violation("%s: node %d exited with %s unexpectedly:\n%s"
                               % (where, nd.i, nd.proc.returncode, tail(nd.log_path)))
                nd.crashes += 1
            nd.expected_exit = True
            if nd.crashes > self.args.max_restarts:
                # A crash loop: further cycles would only repeat it.
                if not self.aborted:
                    self.violation("%s: node %d crashed %d times; the campaign stops here"
                                   % (where, nd.i, nd.crashes))
                self.aborted = True
                continue
            nd.start()  # keep the campaign going; a violation stays recorded
            if not nd.wait_ready(20):
                self.violation("%s: node %d did not restart" % (where, nd.i))

    def cycle(self, c):
        self.cycle_no = c
        kind = self.pick_fault()
        self.faults[kind] += 1
        desc = self.run_fault(c, kind)
        t_heal = now()
        leader = self.wait_converged(self.args.converge_s)
        conv = now() - t_heal
        self.check_processes("cycle %d" % c)
        if leader is None:
            self.violation("cycle %d: no convergence within %.0fs after %s; last status %s"
                           % (c, self.args.converge_s, desc, self.brief_status()))
        else:
            self.convergence.append(conv)
        if self.args.digest_every and c % self.args.digest_every == 0:
            self.writer_pause.set()
            self.writer_idle.wait(self.args.write_retry_s + 5)
            if self.check_digests(15, "cycle %d" % c):
                self.check_agents_current(self.args.agent_bound_s, "cycle %d" % c)
            self.writer_pause.clear()
        line = "cycle %d: %s; converged in %.2fs (leader %s)" % (c, desc, conv, leader)
        self.fault_log.append(line)
        self.log(line)

    def agent_last(self, nd):
        """The last (name, version) each agent of nd printed, read incrementally."""
        try:
            with open(nd.agent_log, "rb") as f:
                f.seek(nd.agent_log_off)
                data = f.read()
        except OSError:
            return nd.agent_last
        end = data.rfind(b"\n") + 1
        nd.agent_log_off += end
        for line in data[:end].decode(errors="replace").splitlines():
            f = line.split()
            if len(f) >= 7 and f[0] == "RECV":
                nd.agent_last[int(f[1])] = (f[2], int(f[3]), line)
        return nd.agent_last

    def check_agents_current(self, bound, where):
        """With writes paused and replicas equal: every agent gets the newest version, soon."""
        newest = {}
        for name in WRITE_NAMES:
            st, j, _ = api(self.topo.ip(1), "GET", "/api/v1/configs/" + name, timeout=5)
            if st != 200 or not j.get("versions"):
                return  # nothing published yet, or the read failed: the final check covers it
            newest[name] = j["versions"][0]["version"]
        end = now() + bound
        t0 = now()
        while True:
            behind = []
            for nd in self.nodes.values():
                last = self.agent_last(nd)
                for idx in range(self.args.agents):
                    name = WRITE_NAMES[idx % len(WRITE_NAMES)]
                    got = last.get(idx)
                    if got is None or (got[0], got[1]) != (name, newest[name]):
                        behind.append((nd.i, idx, got[:2] if got else None, newest[name]))
            if not behind:
                self.agent_lag.append(now() - t0)
                return
            if now() > end:
                self.violation("%s: agents not on the newest version %.0fs after the replicas "
                               "agreed (node, agent, has, newest): %s" % (where, bound, behind))
                return
            time.sleep(0.1)

    def brief_status(self):
        with self.lock:
            return {i: (s.get("role"), s.get("term"), (s.get("leader") or {}).get("id"),
                        s.get("read_only")) for i, s in self.last_status.items()}

    # --- the run -----------------------------------------------------------------------------

    def run(self):
        a = self.args
        self.log("seed %d, %d nodes, %d cycles, faults %s, workdir %s"
                 % (a.seed, self.n, a.cycles, a.faults, self.workdir))
        self.setup()
        if not self.faketime:
            self.log("clock fault off (no libfaketime, or a sanitizer build)")
        if shutil.which("iptables-nft") is None:
            self.log("delay fault off (no iptables-nft for the NFQUEUE rule)")
        for nd in self.nodes.values():
            nd.start_agents()
        for i in self.nodes:
            self.spawn(self.poller, i)
        self.spawn(self.writer)
        time.sleep(1.0)
        deadline = self.t0 + a.max_seconds
        done = 0
        for c in range(1, a.cycles + 1):
            if self.aborted:
                self.log("stopping after %d cycles: a node crashes again and again" % done)
                break
            if now() > deadline:
                self.log("time budget (%ds) reached after %d cycles" % (a.max_seconds, done))
                break
            self.cycle(c)
            done += 1
        self.cycles_done = done
        self.finish()

    def finish(self):
        # Writes stop; heal; converge; then the whole record is checked.
        self.writer_pause.set()
        self.writer_idle.wait(self.args.write_retry_s + 5)
        for i in self.nodes:
            self.topo.heal(i)
            self.nodes[i].kill(signal.SIGCONT)
        result = {"leader": self.wait_converged(self.args.converge_s)}
        result["digests"] = self.check_digests(20, "final")
        result["stores"] = {i: self.read_store(i) for i in self.nodes}
        # Agents get the last pushes: bounded, then the same check as after every cycle.
        self.check_agents_current(max(10.0, self.args.agent_bound_s), "final")
        self.stop_all.set()
        for nd in self.nodes.values():
            if nd.agent is not None:
                nd.agent.terminate()
        for nd in self.nodes.values():
            if nd.agent is not None:
                try:
                    nd.agent.wait(10)
                except subprocess.TimeoutExpired:
                    nd.agent.kill()
        self.check_processes("end")
        exits = {}
        for nd in self.nodes.values():
            nd.expected_exit = True
            if nd.alive():
                nd.proc.terminate()
        for nd in self.nodes.values():
            try:
                exits[nd.i] = nd.proc.wait(20)
            except subprocess.TimeoutExpired:
                nd.proc.kill()
                exits[nd.i] = "hung on SIGTERM"
            if exits[nd.i] != 0:
                self.violation("node %d: exit status %s on SIGTERM:\n%s"
                               % (nd.i, exits[nd.i], tail(nd.log_path)))
        if result.get("leader") is None:
            self.violation("final: no convergence")
        self.check_record(result.get("stores") or {})

    def read_store(self, i):
        out = {}
        for name in WRITE_NAMES + [PROBE_NAME]:
            st, j, _ = api(self.topo.ip(i), "GET", "/api/v1/configs/" + name, timeout=10)
            if st == 404:
                out[name] = []
                continue
            if st != 200:
                self.violation("final: GET configs/%s on node %d: %s %s" % (name, i, st, j))
                out[name] = None
                continue
            out[name] = [(v["version"], v["config_hash"], v.get("message", ""))
                         for v in j.get("versions", [])]
        return out

    # --- checker -----------------------------------------------------------------------------

    def check_record(self, stores):
        s = {}
        self.figures = s
        nodes = sorted(self.nodes)
        # Stores identical on every node.
        ref = stores.get(nodes[0])
        for i in nodes[1:]:
            if stores.get(i) != ref:
                self.violation("final: store of node %d differs from node %d" % (i, nodes[0]))
        store = {}  # (name, version) -> hash, over every node
        for i in nodes:
            for name, versions in (stores.get(i) or {}).items():
                for v, h, msg in versions or []:
                    if store.setdefault((name, v), h) != h:
                        self.violation("(%s, %d) has two hashes: %s, %s"
                                       % (name, v, store[(name, v)], h))
        # Exactly once: one Idempotency-Key never makes two versions.
        for name, versions in (ref or {}).items():
            seen = collections.Counter(m for _, _, m in versions or [])
            for m, cnt in seen.items():
                if m and cnt > 1:
                    self.violation("key %s applied %d times in %s" % (m, cnt, name))
        # Every acknowledged write present on every node with its hash.
        verified = 0
        for a in self.acks:
            ok = True
            for i in nodes:
                vs = {(v, h) for v, h, _ in ((stores.get(i) or {}).get(a["name"]) or [])}
                if (a["version"], a["hash"]) not in vs:
                    ok = False
                    self.violation("acknowledged write lost on node %d: %s" % (i, a))
            verified += ok
        acked_versions = collections.defaultdict(set)
        for a in self.acks:
            acked_versions[(a["name"], a["version"])].add(a["hash"])
        for nv, hs in acked_versions.items():
            if len(hs) > 1:
                self.violation("(%s, %s) acknowledged with two hashes: %s" % (nv + (hs,)))
        # Agents: signatures and hashes verified, and only versions the store has.
        recv = bad = foreign = 0
        for nd in self.nodes.values():
            try:
                lines = open(nd.agent_log).read().splitlines()
            except OSError:
                lines = []
            for line in lines:
                f = line.split()
                if not f or f[0] != "RECV":
                    continue
                recv += 1
                if len(f) < 7 or f[5] != "sig=ok" or f[6] != "hash=ok":
                    bad += 1
                    self.violation("node %d agent received a config that does not verify: %s"
                                   % (nd.i, line))
                    continue
                if store.get((f[2], int(f[3]))) != f[4]:
                    foreign += 1
                    self.violation("node %d agent received (%s, %s) hash %s not in the store"
                                   % (nd.i, f[2], f[3], f[4]))
        # After healing, every agent ends with the newest version of its configuration.
        newest = {n: max((v for v, _, _ in (ref or {}).get(n) or []), default=None)
                  for n in WRITE_NAMES}
        stale = 0
        for nd in self.nodes.values():
            last = {}
            try:
                lines = open(nd.agent_log).read().splitlines()
            except OSError:
                lines = []
            for line in lines:
                f = line.split()
                if len(f) >= 7 and f[0] == "RECV":
                    last[int(f[1])] = (f[2], int(f[3]))
            for idx in range(self.args.agents):
                want = (WRITE_NAMES[idx % len(WRITE_NAMES)],
                        newest[WRITE_NAMES[idx % len(WRITE_NAMES)]])
                if last.get(idx) != want:
                    stale += 1
                    self.violation("node %d agent %d ended with %s, newest is %s"
                                   % (nd.i, idx, last.get(idx), want))
        # Leaders per term, from the API and from the logs.
        log_leaders = collections.defaultdict(set)
        for nd in self.nodes.values():
            for line in open(nd.log_path, errors="replace"):
                if "became leader (term" in line:
                    p = line.split("node ", 1)[1]
                    log_leaders[int(p.split("(term ")[1].split(")")[0])].add(int(p.split()[0]))
                if "AddressSanitizer" in line or "runtime error:" in line or \
                        "LeakSanitizer" in line:
                    self.violation("node %d sanitizer report: %s" % (nd.i, line.strip()))
                if line.startswith("<3>"):
                    # Nothing is tampered with here: a version refused or a configuration
                    # that fails to load means agents are not served what is committed.
                    if "refusing to serve" in line or "load configuration" in line:
                        self.violation("node %d: %s" % (nd.i, line.strip()))
                    msg = " ".join(w if not any(ch.isdigit() for ch in w) else "N"
                                   for w in line.strip().split()[1:])
                    self.errors_logged[msg[:120]] += 1
        for t, ls in log_leaders.items():
            if len(ls) > 1:
                self.violation("logs: two leaders in term %d: %s" % (t, sorted(ls)))
        for t, ls in self.claims.items():
            if len(ls) > 1:
                self.violation("API: nodes named different leaders for term %s: %s"
                               % (t, sorted(ls)))
        ro = [b for _, _, b in self.ro_bounds]
        conv = sorted(self.convergence)
        s.update({
            "seed": self.args.seed, "nodes": self.n, "cycles": self.cycles_done,
            "faults": dict(self.faults),
            "writes_acked": len(self.acks),
            "writes_acked_distinct_keys": len({a["key"] for a in self.acks}),
            "writes_verified": verified,
            "writes_outcome_unknown_given_up": len(self.unknown_keys),
            "write_attempts_by_status": dict(self.attempts),
            "versions_in_store": len(store),
            "agent_configs_received": recv, "agent_configs_bad_signature": bad,
            "agent_configs_not_in_store": foreign,
            "agents_not_on_newest_version_at_end": stale,
            "terms_with_leader": len(log_leaders),
            "max_leaders_per_term_logs": max((len(v) for v in log_leaders.values()), default=0),
            "max_leaders_per_term_api": max((len(v) for v in self.samples.values()), default=0),
            "read_only_episodes": len(ro),
            "read_only_bound_max_s": round(max(ro), 3) if ro else None,
            "read_only_bound_median_s": round(sorted(ro)[len(ro) // 2], 3) if ro else None,
            "majority_first_ack_after_cut_max_s":
                round(max(self.majority_avail), 3) if self.majority_avail else None,
            "majority_first_ack_after_cut_median_s":
                round(sorted(self.majority_avail)[len(self.majority_avail) // 2], 3)
                if self.majority_avail else None,
            "majority_first_ack_after_leader_cut_max_s":
                round(max(self.majority_avail_new_leader), 3)
                if self.majority_avail_new_leader else None,
            "majority_first_ack_after_leader_cut_median_s":
                round(sorted(self.majority_avail_new_leader)[
                    len(self.majority_avail_new_leader) // 2], 3)
                if self.majority_avail_new_leader else None,
            "majority_no_write_accepted_during_leader_cut": len(self.majority_no_ack),
            "convergence_median_s": round(conv[len(conv) // 2], 2) if conv else None,
            "convergence_p95_s": round(conv[int(len(conv) * 0.95)], 2) if conv else None,
            "convergence_max_s": round(conv[-1], 2) if conv else None,
            "digest_checks_passed": self.digest_checks,
            "agent_catch_up_checks": len(self.agent_lag),
            "agent_catch_up_max_s": round(max(self.agent_lag), 2) if self.agent_lag else None,
            "fail_stops_on_full_disk": len(self.failstops),
            "node_starts": {i: nd.starts for i, nd in self.nodes.items()},
            "violations": len(self.violations),
            "duration_s": round(now() - self.t0, 1),
            "clock_fault": self.faketime,
        })
        self.leaders_per_term = {t: sorted(v) for t, v in sorted(log_leaders.items())}

    def report(self, path):
        s = getattr(self, "figures", {})
        a = self.args
        lines = ["# Chaos campaign: seed %d, %d nodes" % (a.seed, self.n), "",
                 "Replay: `make chaos SEED=%d CYCLES=%d NODES=%d` (or `python3 "
                 "tests/chaos/chaos.py --seed %d --cycles %d --nodes %d ...`)."
                 % (a.seed, a.cycles, self.n, a.seed, a.cycles, self.n), "",
                 "Node logs, agent logs and every acknowledged write (acks.json): `%s`."
                 % self.workdir, "",
                 "Binary: `%s`%s." % (a.opampd, " (sanitizer build)"
                                      if sanitized(a.opampd) else "")]
        if a.note:
            lines += ["", a.note]
        lines += ["", "## Summary", ""] + self.summary(s) + ["",
                 "## Figures", "", "```json", json.dumps(s, indent=1, sort_keys=True), "```", "",
                 "## Violations (%d)" % len(self.violations), ""]
        lines += ["- " + v.replace("\n", " | ")[:2000] for v in self.violations] or ["none"]
        lines += ["", "## Nodes that stopped themselves on a full disk (%d)" % len(self.failstops),
                  "", "These exits are opampd's designed fail-stop (raft_fsm/fsm.c die(): a "
                  "replica that cannot apply an entry must not skip it); the harness restarts "
                  "the node once the disk has room and it catches up.", ""]
        lines += ["- " + f for f in self.failstops] or ["none"]
        lines += ["", "## Errors the nodes logged (numbers masked)", "", "```"]
        lines += ["%6d  %s" % (n, m) for m, n in self.errors_logged.most_common(30)]
        lines += ["```", "", "## Leaders per term (from the node logs)", "", "```"]
        lines += ["term %d: %s" % (t, v) for t, v in getattr(self, "leaders_per_term", {}).items()]
        lines += ["```", "", "## Fault cycles", "", "```"] + self.fault_log + ["```", ""]
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "w") as f:
            f.write("\n".join(lines))
        # The raw record stays with the node logs, out of the report.
        with open(os.path.join(self.workdir, "acks.json"), "w") as f:
            json.dump(self.acks, f)

    def summary(self, s):
        if not s:
            return ["The campaign did not reach the checker (see the violations and the log)."]
        return [
            "- %s fault cycles: %s." % (s["cycles"], ", ".join(
                "%s %d" % kv for kv in sorted(s["faults"].items()))),
            "- %d writes acknowledged (201), %d verified on every node with the same hash; "
            "%d versions in the store; %d write attempts answered 503 and retried with the same "
            "Idempotency-Key." % (s["writes_acked"], s["writes_verified"],
                                  s["versions_in_store"],
                                  s["write_attempts_by_status"].get("503", 0)),
            "- Leaders: %d terms had a leader, at most %d per term (logs), %d (API polls)."
            % (s["terms_with_leader"], s["max_leaders_per_term_logs"],
               s["max_leaders_per_term_api"]),
            "- Minority read-only: %d cut-off nodes answered 503 read_only after %ss at most "
            "(median %ss) from the cut; the anchor, etcd 3.4 with its leader cut off, answers "
            "after ~7 s with a generic timeout." % (s["read_only_episodes"],
                                                    s["read_only_bound_max_s"],
                                                    s["read_only_bound_median_s"]),
            "- With the leader cut off the majority accepted its first write after %ss median, "
            "%ss at most (etcd 3.4: ~2.1 s)."
            % (s["majority_first_ack_after_leader_cut_median_s"],
               s["majority_first_ack_after_leader_cut_max_s"]),
            "- Convergence after healing: median %ss, p95 %ss, max %ss; %d digest comparisons "
            "equal." % (s["convergence_median_s"], s["convergence_p95_s"],
                        s["convergence_max_s"], s["digest_checks_passed"]),
            "- Agents: %d configs received, %d failed signature or hash, %d not in the store."
            % (s["agent_configs_received"], s["agent_configs_bad_signature"],
               s["agent_configs_not_in_store"]),
            "- Violations: %d." % s["violations"],
        ]

    def teardown(self):
        self.stop_all.set()
        for nd in self.nodes.values():
            for p in (nd.agent, nd.proc):
                if p is not None and p.poll() is None:
                    try:
                        os.kill(p.pid, signal.SIGCONT)
                        p.kill()
                        p.wait(5)
                    except (OSError, subprocess.TimeoutExpired):
                        pass
        cleanup(self.topo.prefix, self.workdir)
        with open(os.path.join(self.workdir, "cleaned"), "w") as f:
            f.write("ok\n")
        if getattr(self, "guardian", None) is not None:
            os.close(self.guardian)


def sanitized(binary):
    try:
        with open(binary, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


def tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


def can_run():
    """The reason this machine cannot run a campaign, or None."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "nft", "tc", "mount"):
        if shutil.which(tool) is None:
            return "%s not installed (deploy/setup-deps.sh installs it)" % tool
    probe = "chxprobe%d" % os.getpid()
    rc, out = sh(["ip", "netns", "add", probe], check=False)
    if rc != 0:
        return "cannot create a network namespace: " + out.strip()
    try:
        rc, out = sh(["ip", "netns", "exec", probe, "nft", "add", "table", "inet", "t"],
                     check=False)
        if rc != 0:
            return "nftables does not work in a network namespace: " + out.strip()
    finally:
        sh(["ip", "netns", "del", probe], check=False)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--opampd", required=True)
    ap.add_argument("--agent", required=True, help="the chaos_agent binary")
    ap.add_argument("--nodes", type=int, default=3, choices=[3, 5])
    ap.add_argument("--cycles", type=int, default=20)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--slot", default="0",
                    help="1-12 letters or digits: namespaces are named chx-<slot>-*, and a "
                    "stale run with the same slot is cleaned up first")
    ap.add_argument("--workdir", default="/tmp/opampd-chaos")
    ap.add_argument("--report", default=None)
    ap.add_argument("--faults", default="partition,isolate_leader,loss,delay,slow,kill,stop,"
                    "disk_full,clock")
    ap.add_argument("--agents", type=int, default=3, help="agents per node")
    ap.add_argument("--hold-min", type=float, default=1.5)
    ap.add_argument("--hold-max", type=float, default=3.5)
    ap.add_argument("--ro-bound", type=float, default=2.0,
                    help="a minority node must answer 503 read_only within this many seconds")
    ap.add_argument("--converge-s", type=float, default=30)
    ap.add_argument("--agent-bound-s", type=float, default=5.0,
                    help="after each cycle every agent must have the newest versions within this")
    ap.add_argument("--digest-every", type=int, default=1)
    ap.add_argument("--write-interval", type=float, default=0.05)
    ap.add_argument("--write-timeout", type=float, default=3.0)
    ap.add_argument("--write-retry-s", type=float, default=20.0)
    ap.add_argument("--poll-interval", type=float, default=0.25)
    # Each node's data directory. raft alone preallocates three 16 MiB log segments (the open
    # one and two prepared), so a node needs well over 48 MiB before sqlite writes a page; the
    # disk_full fault fills whatever is left, whatever the size.
    ap.add_argument("--tmpfs-mb", type=int, default=160)
    ap.add_argument("--note", default="", help="a line for the report (which build, why)")
    ap.add_argument("--max-restarts", type=int, default=3,
                    help="unexpected exits of one node before the campaign stops")
    ap.add_argument("--max-seconds", type=float, default=7200)
    ap.add_argument("--short", action="store_true",
                    help="ctest mode: bounded at 150 s, SKIP (77) when it cannot run")
    args = ap.parse_args()
    if args.seed is None:
        args.seed = random.SystemRandom().randint(1, 10 ** 6)
    if args.short:
        args.max_seconds = min(args.max_seconds, 150)
    if not (1 <= len(args.slot) <= 12 and args.slot.isalnum() and args.slot.isascii()):
        ap.error("--slot must be 1-12 letters or digits")
    why = can_run()
    if why is not None:
        print("SKIP: chaos campaign needs root, network namespaces and nftables: %s" % why)
        return SKIP
    for p in (args.opampd, args.agent):
        if not os.access(p, os.X_OK):
            print("chaos: %s is not executable" % p)
            return 2
    c = Campaign(args)

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    rc = 2
    try:
        c.run()
        rc = 1 if c.violations else 0
    except KeyboardInterrupt as e:
        print("chaos: interrupted (%s); cleaning up" % e, flush=True)
        rc = 130
    except Exception as e:
        import traceback
        traceback.print_exc()
        print("chaos: harness error: %s" % e, flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        c.teardown()
    if args.report:
        c.report(args.report)
    f = getattr(c, "figures", {})
    print("chaos: seed %d: %s cycles, faults %s, %s writes acked, %s verified, read-only bound "
          "max %ss, convergence median %ss max %ss, %d violations"
          % (args.seed, f.get("cycles"), f.get("faults"), f.get("writes_acked"),
             f.get("writes_verified"), f.get("read_only_bound_max_s"),
             f.get("convergence_median_s"), f.get("convergence_max_s"), len(c.violations)))
    if args.report:
        print("chaos: report %s" % args.report)
    return rc


if __name__ == "__main__":
    sys.exit(main())
