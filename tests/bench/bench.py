#!/usr/bin/env python3
"""The benchmarks of issue 6, driven by `make bench` (through tests/bench/run.sh).

Starts real opampd nodes (and a 3-member etcd for the write comparison) on loopback, drives
them with tests/bench/loadgen, and writes bench/results/<name>.json plus the summary
bench/README.md. Every step is bounded in time; the whole run takes about 15 minutes on two
cores. Before each measurement it waits (within a budget) for the machine to be quiet and
records the load it measured under.

    python3 tests/bench/bench.py --build build-bench [--only idle,fanout,...] [--quick]
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HZ = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
ALL = ["fanout1k", "idle10k", "idle19k", "messages", "writes", "failover"]

# The targets, printed next to the figures.
TARGETS = {
    "rss_per_agent_kib": 4.0,
    "fanout_10k_p100_ms": 100.0,
    "storm_admin_p99_ms": 200.0,
    "failover_writes_s": 2.0,
    "failover_disconnects": 0,
}


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ----------------------------------------------------------------------------- load


class Quiet:
    """Waits for a quiet machine: 1-minute loadavg under 0.7. The load average decays slowly
    after our own runs, so once 20 s have passed a machine whose CPUs were less than 30 %
    busy over the last 3 s also counts as quiet. The waiting has an overall budget."""

    def __init__(self, budget_s, per_wait_s):
        self.budget = budget_s
        self.per_wait = per_wait_s
        self.waited = 0.0

    @staticmethod
    def loadavg():
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])

    @staticmethod
    def cpu_times():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + v[4]
        return sum(v), idle

    def busy(self, secs=3.0):
        t1, i1 = self.cpu_times()
        time.sleep(secs)
        t2, i2 = self.cpu_times()
        return 1.0 - (i2 - i1) / max(1, t2 - t1)

    def wait(self):
        start = time.time()
        limit = min(self.per_wait, max(0.0, self.budget - self.waited))
        busy = None
        while True:
            la = self.loadavg()
            if la < 0.7:
                break
            busy = self.busy()
            if time.time() - start >= 20 and busy < 0.3:
                break
            if time.time() - start >= limit:
                log("machine still busy (loadavg %.2f, cpu %.0f%%): measuring anyway" %
                    (la, 100 * busy))
                break
        waited = time.time() - start
        self.waited += waited
        if busy is None:
            busy = self.busy(1.0)
        return {"loadavg_1m": self.loadavg(), "cpu_busy": round(busy, 3),
                "waited_s": round(waited, 1)}


# ----------------------------------------------------------------------------- HTTP


class Admin:
    """A keep-alive admin API client for one node."""

    def __init__(self, port, token, timeout=10):
        self.port = port
        self.token = token
        self.timeout = timeout
        self.conn = None

    def request(self, method, path, body=None):
        for attempt in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                           timeout=self.timeout)
                hdr = {"Authorization": "Bearer " + self.token}
                data = None
                if body is not None:
                    data = json.dumps(body).encode()
                    hdr["Content-Type"] = "application/json"
                self.conn.request(method, path, body=data, headers=hdr)
                r = self.conn.getresponse()
                raw = r.read()
                return r.status, raw
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt == 1:
                    raise
        raise RuntimeError("unreachable")

    def json(self, method, path, body=None):
        st, raw = self.request(method, path, body)
        try:
            return st, json.loads(raw) if raw else None
        except ValueError:
            return st, None

    def metric(self, name):
        st, raw = self.request("GET", "/metrics")
        for line in raw.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ----------------------------------------------------------------------------- processes


class Node:
    """One opampd process with its own data directory and fixed ports."""

    def __init__(self, binary, root, node_id=1, voters=None, key=None, extra=None):
        self.bin = binary
        self.id = node_id
        self.dir = os.path.join(root, "n%d" % node_id)
        self.opamp = free_port()
        self.admin_port = free_port()
        self.raft = free_port()
        self.voters = voters
        self.key = key
        self.extra = extra or []
        self.proc = None
        self.admin = None
        os.makedirs(self.dir, exist_ok=True)

    def args(self):
        a = [self.bin, "serve", "--node-id", str(self.id), "--data-dir", self.dir,
             "--opamp-listen", "127.0.0.1:%d" % self.opamp,
             "--admin-listen", "127.0.0.1:%d" % self.admin_port,
             "--raft-listen", "127.0.0.1:%d" % self.raft,
             "--ready-file", os.path.join(self.dir, "ready.json"), "--log-level", "warn"]
        if self.key:
            a += ["--signing-key", self.key]
        for v in self.voters or []:
            a += ["--voter", v]
        return a + self.extra

    def voter_line(self):
        return "%d=127.0.0.1:%d=http://127.0.0.1:%d" % (self.id, self.raft, self.admin_port)

    def start(self, wait=True):
        ready = os.path.join(self.dir, "ready.json")
        if os.path.exists(ready):
            os.unlink(ready)
        self.log = open(os.path.join(self.dir, "stderr.log"), "ab")
        self.proc = subprocess.Popen(self.args(), stdout=subprocess.DEVNULL, stderr=self.log)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout=30):
        ready = os.path.join(self.dir, "ready.json")
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError("opampd node %d exited (%d); see %s" %
                                   (self.id, self.proc.returncode, self.dir))
            if os.path.exists(ready):
                with open(os.path.join(self.dir, "admin.token")) as f:
                    self.admin = Admin(self.admin_port, f.read().strip())
                return
            time.sleep(0.02)
        raise RuntimeError("opampd node %d not ready in %d s" % (self.id, timeout))

    def stop(self, timeout=60):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.admin:
            self.admin.close()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.admin:
            self.admin.close()

    def rss_kib(self):
        return proc_rss_kib(self.proc.pid)

    def cpu_s(self):
        return proc_cpu_s(self.proc.pid)

    def url(self):
        return "ws://127.0.0.1:%d/v1/opamp" % self.opamp


def proc_cpu_s(pid):
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as f:
        v = f.read().rsplit(")", 1)[1].split()
    return (int(v[11]) + int(v[12])) / HZ


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def tcp_mem_kib():
    """The kernel's slab memory (machine-wide: sockets, inodes, epoll entries of both ends
    of the loopback connections, and whatever else runs), from /proc/meminfo."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("Slab:"):
                return int(line.split()[1])
    return None


class Loadgen:
    def __init__(self, binary, workdir, name, args):
        self.status_path = os.path.join(workdir, name + ".status.json")
        self.out_path = os.path.join(workdir, name + ".out.json")
        self.err_path = os.path.join(workdir, name + ".err")
        if os.path.exists(self.status_path):
            os.unlink(self.status_path)
        self.out = open(self.out_path, "wb")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen([binary] + args + ["--status-file", self.status_path,
                                                        "--status-ms", "50"],
                                     stdout=self.out, stderr=self.err)

    def status(self):
        try:
            with open(self.status_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def wait(self, pred, timeout, step=0.02):
        end = time.time() + timeout
        while time.time() < end:
            st = self.status()
            if st is not None and pred(st):
                return st
            if self.proc.poll() is not None:
                raise RuntimeError("loadgen exited early: " + open(self.err_path).read())
            time.sleep(step)
        return None

    def finish(self, timeout=60, natural=False):
        """Stop it (or, natural, wait for its --duration to end) and return its results."""
        if natural:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()
        self.err.close()
        with open(self.out_path) as f:
            text = f.read()
        try:
            return json.loads(text)
        except ValueError:
            raise RuntimeError("loadgen printed no results; stderr: " + open(self.err_path).read())


def pct(sorted_vals, q):
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1, int(-(-q * len(sorted_vals) // 1)) - 1))
    return sorted_vals[k]


# ----------------------------------------------------------------------------- the benches


class Bench:
    def __init__(self, args):
        self.a = args
        self.opampd = os.path.join(args.build, "opampd", "opampd")
        self.loadgen = os.path.join(args.build, "tests", "bench", "loadgen")
        self.root = tempfile.mkdtemp(prefix="opampd-bench-", dir=args.tmp)
        self.quiet = Quiet(args.quiet_budget, args.quiet_wait)
        self.results = {}
        self.started = time.time()
        self.nodes = []
        self.loadgens = []
        os.makedirs(os.path.join(args.out, "results"), exist_ok=True)

    # -- helpers

    def node(self, name, **kw):
        n = Node(self.opampd, os.path.join(self.root, name), **kw)
        self.nodes.append(n)
        return n

    def lg(self, name, args):
        l = Loadgen(self.loadgen, self.root, name, args)
        self.loadgens.append(l)
        return l

    def cleanup(self):
        for l in self.loadgens:
            if l.proc.poll() is None:
                l.proc.kill()
                l.proc.wait()
        for n in self.nodes:
            n.kill()
        self.loadgens, self.nodes = [], []

    def save(self, name, data):
        data["name"] = name
        data["date"] = datetime.datetime.now().isoformat(timespec="seconds")
        self.results[name] = data
        with open(os.path.join(self.a.out, "results", name + ".json"), "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        log("%s: saved" % name)

    def agents_args(self, node, n, fleet, seed, rate=None, extra=None, src_base=1):
        src = max(1, min(250 * 250, (n + 999) // 1000))
        return ["agents", "--url", node.url(), "--agents", str(n), "--rate",
                str(rate or self.a.rate), "--fleet", fleet, "--uid-seed", str(seed),
                "--src-addrs", str(src), "--src-base", str(src_base), "--duration", "1500",
                "--raw"] + (extra or [])

    def connect(self, node, n, fleet, seed, name, src_base=1):
        """Start n agents on node; returns the loadgen and connect figures."""
        lg = self.lg(name, self.agents_args(node, n, fleet, seed, src_base=src_base))
        t0 = time.time()
        st = lg.wait(lambda s: s["ever_ready"] >= n, timeout=max(60, 4 * n / self.a.rate))
        if st is None:
            raise RuntimeError("%s: only %s of %d agents connected" %
                               (name, (lg.status() or {}).get("ever_ready"), n))
        return lg, {"connect_all_s": round(time.time() - t0, 2),
                    "connect_failed": st["connect_failed"], "unavailable": st["unavailable"],
                    "http_503": st["http_503"], "rate_asked": self.a.rate}

    def fanout(self, node, lg, n, fleet, versions):
        """Publish `versions` versions matching the n agents; time each one. Polls the
        loadgen status (what agents got) and /metrics (what the server processed)."""
        out = []
        base_msgs = node.admin.metric("opampd_messages_websocket_total")
        for v in range(versions):
            load = self.quiet.wait()
            body = {"selector": {"bench.fleet": fleet}, "priority": 10,
                    "files": {"collector.yaml": {"content_type": "text/yaml",
                                                 "body": fanout_yaml(fleet, v)}},
                    "message": "fan-out %d" % v}
            lg_cpu0 = proc_cpu_s(lg.proc.pid)
            node_cpu0 = node.cpu_s()
            admin = Admin(node.admin_port, node.admin.token)
            t_req = time.time()
            st, res = admin.json("POST", "/api/v1/configs/fanout-" + fleet, body)
            t_201 = time.time()
            admin.close()
            if st != 201:
                raise RuntimeError("publish: %d %s" % (st, res))
            h = res["config_hash"]
            # The server has processed every APPLIED once its message counter moved by
            # 2 per agent (APPLYING + APPLIED); heartbeats can only make that earlier, so
            # the other figure is kept as well.
            want_msgs = base_msgs + 2 * n
            t_server = None
            t_all = None
            m = Admin(node.admin_port, node.admin.token)
            end = time.time() + 120
            while time.time() < end:
                s = lg.status() or {}
                hs = [x for x in s.get("hashes", []) if x["hash"] == h]
                if t_server is None:
                    cur = m.metric("opampd_messages_websocket_total")
                    if cur is not None and cur >= want_msgs:
                        t_server = time.time()
                if hs and hs[0]["applied"] >= n and t_all is None:
                    t_all = time.time()
                if t_all is not None and t_server is not None:
                    break
                time.sleep(0.01)
            m.close()
            base_msgs = node.admin.metric("opampd_messages_websocket_total")
            out.append({"version": res["version"], "hash": h, "t_request": t_req,
                        "loadgen_cpu_s": round(proc_cpu_s(lg.proc.pid) - lg_cpu0, 3),
                        "opampd_cpu_s": round(node.cpu_s() - node_cpu0, 3),
                        "t_201": t_201, "publish_ms": round((t_201 - t_req) * 1e3, 2),
                        "t_server_applied_seen": t_server, "load": load})
            time.sleep(1)
        return out

    @staticmethod
    def fanout_figures(runs, lg_result, n):
        by_hash = {c["hash"]: c for c in lg_result["configs"]}
        figs = []
        for r in runs:
            c = by_hash.get(r["hash"])
            f = {"version": r["version"], "publish_ms": r["publish_ms"], "load": r["load"],
                 "loadgen_cpu_s": r["loadgen_cpu_s"], "opampd_cpu_s": r["opampd_cpu_s"]}
            if c is None:
                f["received"] = 0
                figs.append(f)
                continue
            recv = c["recv_us"]
            appl = c["applied_us"]
            t0 = r["t_201"] * 1e6
            tq = r["t_request"] * 1e6

            def at(v, q, base):
                k = int(-(-q * n // 1)) - 1
                return round((v[k] - base) / 1e3, 2) if k < len(v) else None

            # From the 201 (the definition; negative when agents had the version
            # before the operator had the answer) and from the request being sent.
            f.update({"received": len(recv), "applied": len(appl),
                      "first_ms": round((recv[0] - t0) / 1e3, 2) if recv else None,
                      "p50_ms": at(recv, 0.5, t0), "p99_ms": at(recv, 0.99, t0),
                      "p100_ms": at(recv, 1.0, t0), "applied_p100_ms": at(appl, 1.0, t0),
                      "server_applied_ms": round((r["t_server_applied_seen"] - r["t_201"]) * 1e3,
                                                 1) if r["t_server_applied_seen"] else None,
                      "from_request": {"p50_ms": at(recv, 0.5, tq), "p99_ms": at(recv, 0.99, tq),
                                       "p100_ms": at(recv, 1.0, tq),
                                       "applied_p100_ms": at(appl, 1.0, tq)}})
            figs.append(f)
        return figs

    @staticmethod
    def median_of(figs, key):
        v = sorted(x[key] for x in figs if x.get(key) is not None)
        return v[len(v) // 2] if v else None

    # -- 1 + 2: idle connections, then fan-out on the same agents

    def run_idle(self, name, n, fanout_versions, storm=False, idle=True):
        node = self.node(name)
        node.start()
        time.sleep(1.0)
        load = self.quiet.wait()
        rss0 = node.rss_kib()
        tcp0 = tcp_mem_kib()
        lg, conn = self.connect(node, n, name, 1, name)
        # Let the first exchange settle (every agent has sent its full state and had its
        # reply), then measure the memory and an idle window with heartbeats.
        time.sleep(3)
        rss1 = node.rss_kib()
        tcp1 = tcp_mem_kib()
        idle_res = {}
        if idle and self.a.idle_window > 0:
            load_idle = self.quiet.wait()
            c0, s0, m0 = node.cpu_s(), lg.status(), node.admin.metric(
                "opampd_messages_websocket_total")
            t0 = time.time()
            time.sleep(self.a.idle_window)
            c1, s1, m1 = node.cpu_s(), lg.status(), node.admin.metric(
                "opampd_messages_websocket_total")
            dt = time.time() - t0
            cpu = c1 - c0
            msgs = (m1 - m0) if m0 is not None and m1 is not None else None
            idle_res = {"window_s": round(dt, 1), "cpu_s": round(cpu, 3),
                    "cpu_fraction_of_core": round(cpu / dt, 4),
                    "cpu_us_per_agent_per_s": round(cpu / dt / n * 1e6, 3),
                    "messages": msgs,
                    "cpu_us_per_message": round(cpu / msgs * 1e6, 1) if msgs else None,
                    "disconnects": s1["disconnects"] - s0["disconnects"],
                    "load": load_idle,
                    "heartbeat_interval_s": 30}
        rss2 = node.rss_kib()
        res = {"agents": n, "transport": "websocket", "load": load,
               "rss_kib_before": rss0, "rss_kib_connected": rss1, "rss_kib_after_idle": rss2,
               "rss_per_agent_kib": round((rss1 - rss0) / n, 3),
               "rss_per_agent_kib_after_idle": round((rss2 - rss0) / n, 3),
               "kernel_slab_kib_per_connection_pair": round((tcp1 - tcp0) / n, 3)
               if tcp0 is not None and tcp1 is not None else None,
               "connect": conn, "idle": idle_res}
        if fanout_versions:
            runs = self.fanout(node, lg, n, name, fanout_versions)
            res["rss_kib_after_fanout"] = node.rss_kib()
        if storm:
            res["storm"] = self.storm(node, lg, n)
        lgr = lg.finish()
        res["connect"]["connect_ms"] = lgr["connect_ms"]
        res["connect"]["ramp_ms"] = lgr["ramp_ms"]
        if fanout_versions:
            figs = self.fanout_figures(runs, lgr, n)
            res["fanout"] = {"agents": n, "runs": figs,
                             "median_p50_ms": self.median_of(figs, "p50_ms"),
                             "median_p99_ms": self.median_of(figs, "p99_ms"),
                             "median_p100_ms": self.median_of(figs, "p100_ms"),
                             "median_applied_p100_ms": self.median_of(figs, "applied_p100_ms"),
                             "median_server_applied_ms": self.median_of(figs,
                                                                        "server_applied_ms"),
                             "from_request": {
                                 k: self.median_of([x.get("from_request", {}) for x in figs], k)
                                 for k in ("p50_ms", "p99_ms", "p100_ms", "applied_p100_ms")}}
        node.stop()
        self.cleanup()
        return res

    # -- 5: reconnect storm (restart of the node with every agent connected)

    def storm(self, node, lg, n):
        load = self.quiet.wait()
        s0 = lg.status()
        t_kill = time.time()
        node.stop()
        t_down = time.time()
        probe = Prober(node)
        node.start(wait=False)
        node.wait_ready()
        t_up = time.time()
        probe.start()
        st = lg.wait(lambda s: s["reconnects"] - s0["reconnects"] >= n, timeout=180, step=0.05)
        t_back = time.time()
        time.sleep(2)
        probe.stop()
        s1 = lg.status()
        lat = sorted(probe.lat)
        return {"agents": n, "load": load, "stop_s": round(t_down - t_kill, 2),
                "start_s": round(t_up - t_down, 2),
                "all_back": st is not None,
                "back_after_start_s": round(t_back - t_up, 2),
                "back_after_stop_s": round(t_back - t_kill, 2),
                "reconnected": s1["reconnects"] - s0["reconnects"],
                "unavailable": s1["unavailable"] - s0["unavailable"],
                "http_503": s1["http_503"] - s0["http_503"],
                "connect_failed": s1["connect_failed"] - s0["connect_failed"],
                "admin": {"calls": len(lat), "errors": probe.errors,
                          "p50_ms": pct(lat, 0.5), "p99_ms": pct(lat, 0.99),
                          "max_ms": lat[-1] if lat else None,
                          "call": "GET /api/v1/configs and GET /api/v1/agents/{uid}, in turn"}}

    # -- 3: agent messages one core handles

    def run_messages(self):
        res = {}
        for kind in ("heartbeat", "status"):
            node = self.node("msgs-" + kind)
            node.start()
            n = self.a.flood_agents
            lg = self.lg("msgs-" + kind, self.agents_args(node, n, "msgs", 3,
                                                         extra=["--flood", kind]))
            lg.wait(lambda s: s["ever_ready"] >= n, timeout=60)
            time.sleep(2)
            load = self.quiet.wait()
            c0, m0, t0 = node.cpu_s(), node.admin.metric("opampd_messages_websocket_total"), \
                time.time()
            time.sleep(self.a.flood_window)
            c1, m1, t1 = node.cpu_s(), node.admin.metric("opampd_messages_websocket_total"), \
                time.time()
            lg.finish()
            node.stop()
            self.cleanup()
            dt, cpu, msgs = t1 - t0, c1 - c0, m1 - m0
            res[kind] = {"agents_in_closed_loop": n, "window_s": round(dt, 1),
                         "messages_per_s": round(msgs / dt),
                         "opampd_cpu_fraction": round(cpu / dt, 3),
                         "messages_per_cpu_second": round(msgs / cpu) if cpu else None,
                         "cpu_ms_per_1000_msgs_per_s": round(cpu / dt / (msgs / dt / 1000) * 1e3,
                                                             2) if msgs else None,
                         "load": load}
            log("messages %s: %d/s at %.0f%% of a core" % (kind, msgs / dt, 100 * cpu / dt))
        return res

    # -- 4: writes side by side

    def cluster(self, name, size=3):
        root = os.path.join(self.root, name)
        os.makedirs(root, exist_ok=True)
        key = os.path.join(root, "signing.key")
        subprocess.run([self.opampd, "keygen", key], check=True, stdout=subprocess.DEVNULL)
        nodes = [self.node(name, node_id=i + 1, key=key) for i in range(size)]
        voters = [n.voter_line() for n in nodes]
        for n in nodes:
            n.voters = voters
        for n in nodes:
            n.start(wait=False)
        for n in nodes:
            n.wait_ready()
        return nodes

    def leader_of(self, nodes, timeout=20):
        end = time.time() + timeout
        while time.time() < end:
            for n in nodes:
                if n.proc.poll() is not None:
                    continue
                try:
                    st, c = n.admin.json("GET", "/api/v1/cluster")
                except OSError:
                    continue
                if st == 200 and c.get("role") == "leader" and not c.get("read_only"):
                    return n
            time.sleep(0.1)
        raise RuntimeError("no leader")

    def writes(self, target, urls, token, c, name, extra=None):
        args = ["writes", "--target", target, "--url", ",".join(urls), "--concurrency", str(c),
                "--duration", str(self.a.write_window)] + (extra or [])
        if token:
            args += ["--token", token]
        return self.lg(name, args).finish(timeout=self.a.write_window + 60, natural=True)

    def run_writes(self):
        conc = [1, 16, 64]
        res = {"payload_bytes": 4096, "window_s": self.a.write_window, "opampd": {}, "etcd": {},
               "opampd_one_name": {}}
        nodes = self.cluster("writes")
        leader = self.leader_of(nodes)
        res["opampd"]["leader"] = leader.id
        # Diagnostic, first, on the fresh cluster: the writers all on one configuration.
        # Below every writer has its own configuration, so a run with c writers also leaves
        # c configurations in the store; this separates the cost of concurrency from the
        # cost of the number of configurations.
        for c in conc[1:]:
            load = self.quiet.wait()
            r = self.writes("opampd", ["http://127.0.0.1:%d/api/v1/configs" % leader.admin_port],
                            leader.admin.token, c, "writes-opampd-1name-%d" % c,
                            ["--names", "1", "--name-prefix", "one-"])
            r["load"] = load
            res["opampd_one_name"][str(c)] = r
            log("opampd writes c=%d, one configuration: %.0f/s" % (c, r["writes_per_s"]))
        for c in conc:
            load = self.quiet.wait()
            r = self.writes("opampd", ["http://127.0.0.1:%d/api/v1/configs" % leader.admin_port],
                            leader.admin.token, c, "writes-opampd-%d" % c)
            r["load"] = load
            res["opampd"][str(c)] = r
            log("opampd writes c=%d: %.0f/s p50 %s p99 %s ms" % (
                c, r["writes_per_s"], r["latency_ms"]["p50"] if r["latency_ms"] else None,
                r["latency_ms"]["p99"] if r["latency_ms"] else None))
        for n in nodes:
            n.stop()
        self.cleanup()
        etcd = Etcd(os.path.join(self.root, "etcd"))
        try:
            etcd.start()
            leader_url = etcd.leader_url()
            res["etcd"]["version"] = etcd.version()
            for c in conc:
                load = self.quiet.wait()
                r = self.writes("etcd", [leader_url + "/v3/kv/put"], None, c, "writes-etcd-%d" % c)
                r["load"] = load
                res["etcd"][str(c)] = r
                log("etcd writes c=%d: %.0f/s p50 %s p99 %s ms" % (
                    c, r["writes_per_s"], r["latency_ms"]["p50"] if r["latency_ms"] else None,
                    r["latency_ms"]["p99"] if r["latency_ms"] else None))
        finally:
            etcd.stop()
        res["ratio"] = {}
        for c in conc:
            o, e = res["opampd"][str(c)], res["etcd"][str(c)]
            res["ratio"][str(c)] = {
                "writes_per_s": round(o["writes_per_s"] / e["writes_per_s"], 3)
                if e["writes_per_s"] else None,
                "p99": round(o["latency_ms"]["p99"] / e["latency_ms"]["p99"], 3)
                if o["latency_ms"] and e["latency_ms"] else None}
        return res

    # -- 6: failover under load

    def run_failover(self):
        """Kill the leader under write load and agent traffic, bring it back, repeat."""
        nodes = self.cluster("failover")
        per = self.a.failover_agents
        lgs = []
        for i, n in enumerate(nodes):
            lg = self.lg("failover-agents-%d" % n.id,
                         self.agents_args(n, per, "failover", 10 + i, src_base=10 + i))
            lgs.append((n, lg))
        for n, lg in lgs:
            if lg.wait(lambda s: s["ever_ready"] >= per, timeout=120) is None:
                raise RuntimeError("failover: agents did not connect")
        trials = []
        for t in range(self.a.failover_trials):
            leader = self.leader_of(nodes)
            followers = [n for n in nodes if n is not leader]
            load = self.quiet.wait()
            # Writes go to one follower (each node has its own admin token): it forwards them
            # to the leader, and after the election it leads or forwards to the one that does.
            w = self.lg("failover-writes-%d" % t, [
                "writes", "--target", "opampd", "--url",
                "http://127.0.0.1:%d/api/v1/configs" % followers[0].admin_port,
                "--token", followers[0].admin.token, "--concurrency", "4", "--duration", "30",
                "--retry-ms", "10", "--name-prefix", "failover-%d-" % t, "--raw"])
            time.sleep(3)
            before = {n.id: lg.status() for n, lg in lgs}
            t_kill = time.time()
            leader.kill()
            st = w.wait(lambda s: s["last_ok_us"] > t_kill * 1e6, timeout=25, step=0.01)
            t_ok = time.time()
            time.sleep(2)
            new_leader = self.leader_of(followers)
            after = {n.id: lg.status() for n, lg in lgs}
            wr = w.finish()
            oks = [wr["start_us"] / 1e6 + x / 1e3 for x in wr.get("ok_at_ms", [])]
            # A write the old leader answered just before it died can still complete right
            # after the kill: writes count as accepted again at the end of the longest pause
            # in successful writes after the kill.
            last_before = max([x for x in oks if x <= t_kill], default=None)
            pts = [t_kill] + sorted(x for x in oks if x > t_kill)
            gaps = [(b - a, a, b) for a, b in zip(pts, pts[1:])]
            first_after = max(gaps)[2] if gaps else None
            if gaps and last_before is not None and max(gaps)[1] == t_kill:
                gap_from = last_before
            else:
                gap_from = max(gaps)[1] if gaps else None
            surviving = {str(n.id): after[n.id]["disconnects"] - before[n.id]["disconnects"]
                         for n in followers}
            trials.append({
                "load": load, "old_leader": leader.id, "new_leader": new_leader.id,
                "writes_accepted_again_s": round(first_after - t_kill, 3)
                if first_after else None,
                "gap_in_successful_writes_s": round(first_after - gap_from, 3)
                if first_after and gap_from else None,
                "writes_ok": wr["ok"], "writes_failed": wr["failed"],
                "writes_status": wr["status"],
                "disconnects_on_surviving_nodes": surviving,
                "disconnects_on_surviving_nodes_total": sum(surviving.values()),
                "observed_by_poll_s": round(t_ok - t_kill, 3) if st else None})
            log("failover %d: writes again after %s s, %d agents disconnected on the others" % (
                t, trials[-1]["writes_accepted_again_s"],
                trials[-1]["disconnects_on_surviving_nodes_total"]))
            # The old leader comes back as a follower; its agents reconnect to it.
            leader.start()
            lgk = dict((n.id, lg) for n, lg in lgs)[leader.id]
            lgk.wait(lambda s: s["ready"] >= per, timeout=60, step=0.1)
        for n, lg in lgs:
            lg.finish()
        for n in nodes:
            n.stop()
        self.cleanup()
        again = sorted(x["writes_accepted_again_s"] for x in trials
                       if x["writes_accepted_again_s"] is not None)
        worst = max(trials, key=lambda x: (x["load"] or {}).get("loadavg_1m", 0))
        return {"agents_per_node": per, "writers": 4, "trials": trials, "load": worst["load"],
                "writes_accepted_again_s": again[len(again) // 2] if again else None,
                "writes_accepted_again_max_s": again[-1] if again else None,
                "gap_in_successful_writes_s": Bench.median_of(trials,
                                                              "gap_in_successful_writes_s"),
                "writes_ok": sum(x["writes_ok"] for x in trials),
                "writes_failed": sum(x["writes_failed"] for x in trials),
                "disconnects_on_surviving_nodes_total":
                    sum(x["disconnects_on_surviving_nodes_total"] for x in trials)}

    # -- driver

    def run(self):
        only = self.a.only.split(",") if self.a.only else ALL
        machine = machine_info()
        log("machine: %s, %s cores; results in %s" % (machine["cpu"], machine["cores"],
                                                      self.a.out))
        try:
            if "fanout1k" in only:
                self.save("fanout-1k", self.run_idle("fanout1k", 1000, 3, idle=False))
            if "idle10k" in only:
                self.save("idle-10k", self.run_idle("idle10k", 10000, 3))
            if "idle19k" in only:
                self.save("idle-19k", self.run_idle("idle19k", self.a.max_agents, 3,
                                                    storm=True))
            if "messages" in only:
                self.save("messages", self.run_messages())
            if "writes" in only:
                self.save("writes", self.run_writes())
            if "failover" in only:
                self.save("failover", self.run_failover())
        finally:
            self.cleanup()
            if not self.a.keep:
                shutil.rmtree(self.root, ignore_errors=True)
        # One line per run: a partial run (--only) adds to the log of the full one.
        path = os.path.join(self.a.out, "results", "run.json")
        runs = []
        if self.a.only and os.path.exists(path):
            with open(path) as f:
                runs = json.load(f).get("runs", [])
        runs.append({"date": datetime.datetime.now().isoformat(timespec="seconds"),
                     "only": only, "duration_s": round(time.time() - self.started),
                     "quiet_wait_s": round(self.quiet.waited)})
        with open(path, "w") as f:
            json.dump({"machine": machine, "runs": runs}, f, indent=1)
            f.write("\n")
        write_readme(self.a.out)
        log("done in %d s" % (time.time() - self.started))


class Prober(threading.Thread):
    """Admin API latency while something else happens: calls in a loop, one at a time."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node = node
        self.lat = []
        self.errors = 0
        self.halt = threading.Event()

    def run(self):
        adm = Admin(self.node.admin_port, self.node.admin.token, timeout=5)
        uid = None
        i = 0
        while not self.halt.is_set():
            path = "/api/v1/configs"
            if i % 2 == 1 and uid:
                path = "/api/v1/agents/" + uid
            t = time.perf_counter()
            try:
                st, raw = adm.request("GET", path)
                ok = st == 200
            except OSError:
                ok = False
            d = (time.perf_counter() - t) * 1e3
            if ok:
                self.lat.append(round(d, 3))
            else:
                self.errors += 1
            if uid is None and i == 0:
                try:
                    st, j = adm.json("GET", "/api/v1/agents?attr.host.name=bench-host-00000")
                    if st == 200 and j["agents"]:
                        uid = j["agents"][0]["instance_uid"]
                except (OSError, KeyError, ValueError):
                    pass
            i += 1
            time.sleep(0.01)
        adm.close()

    def stop(self):
        self.halt.set()
        self.join(10)


class Etcd:
    """Three etcd members on loopback (Debian's etcd-server), data on the same disk."""

    def __init__(self, root):
        self.root = root
        self.procs = []
        self.client = [free_port() for _ in range(3)]
        self.peer = [free_port() for _ in range(3)]

    def start(self):
        os.makedirs(self.root, exist_ok=True)
        ic = ",".join("e%d=http://127.0.0.1:%d" % (i, self.peer[i]) for i in range(3))
        for i in range(3):
            log_f = open(os.path.join(self.root, "e%d.log" % i), "wb")
            self.procs.append(subprocess.Popen([
                "etcd", "--name", "e%d" % i, "--data-dir", os.path.join(self.root, "e%d" % i),
                "--listen-client-urls", "http://127.0.0.1:%d" % self.client[i],
                "--advertise-client-urls", "http://127.0.0.1:%d" % self.client[i],
                "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer[i],
                "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % self.peer[i],
                "--initial-cluster", ic, "--initial-cluster-state", "new",
                "--initial-cluster-token", "opampd-bench", "--log-level", "warn"],
                stdout=log_f, stderr=log_f))

    def leader_url(self, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            for i in range(3):
                try:
                    c = http.client.HTTPConnection("127.0.0.1", self.client[i], timeout=2)
                    c.request("POST", "/v3/maintenance/status", body=b"{}")
                    j = json.loads(c.getresponse().read())
                    c.close()
                    if j.get("leader") and j.get("leader") == j.get("header", {}).get(
                            "member_id"):
                        return "http://127.0.0.1:%d" % self.client[i]
                except (OSError, ValueError, http.client.HTTPException):
                    pass
            time.sleep(0.2)
        raise RuntimeError("etcd: no leader")

    def version(self):
        try:
            return subprocess.run(["etcd", "--version"], capture_output=True, text=True,
                                  timeout=10).stdout.split("\n")[0]
        except OSError:
            return None

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def fanout_yaml(fleet, v):
    """About 4 KiB of collector configuration, different for every version."""
    head = ("# fleet %s, version %d\nreceivers:\n  otlp:\n    protocols:\n      grpc:\n"
            "        endpoint: 0.0.0.0:4317\nprocessors:\n  batch:\n    timeout: %ds\n"
            "exporters:\n  otlp:\n    endpoint: gateway:4317\nservice:\n  pipelines:\n"
            "    traces:\n      receivers: [otlp]\n      processors: [batch]\n"
            "      exporters: [otlp]\n" % (fleet, v, 1 + v % 9))
    pad = "".join("# line %03d of padding to make the config about four KiB long\n" % i
                  for i in range(60))
    return (head + pad)[:4096]


def machine_info():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem = int(f.readline().split()[1]) // 1024
    import resource
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_mib": mem, "kernel": platform.release(),
            "nofile_limit": nofile[1], "hostname": platform.node()}


# ----------------------------------------------------------------------------- summary


def load_results(out):
    res = {}
    d = os.path.join(out, "results")
    for fn in sorted(os.listdir(d)):
        if fn.endswith(".json"):
            with open(os.path.join(d, fn)) as f:
                res[fn[:-5]] = json.load(f)
    return res


def fmt(v, nd=1):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return ("%%.%df" % nd) % v
    return str(v)


def load_str(x):
    l = (x or {}).get("load") or {}
    if not l:
        return "n/a"
    return "%s / %s %%" % (fmt(l.get("loadavg_1m"), 2), fmt(100 * l.get("cpu_busy", 0), 0))


def write_readme(out):
    r = load_results(out)
    run = r.get("run", {})
    m = run.get("machine", {})
    runs = run.get("runs", [])
    L = []
    L.append("# opampd benchmarks")
    L.append("")
    L.append("Produced by `make bench` (tests/bench/run.sh → tests/bench/bench.py, load from "
             "tests/bench/loadgen). Raw figures: `bench/results/*.json`.")
    L.append("")
    for x in runs:
        L.append("- Run %s: %s, %s s, of which %s s waiting for a quiet machine" % (
            x["date"], "everything" if len(x["only"]) == len(ALL) else ", ".join(x["only"]),
            x["duration_s"], x["quiet_wait_s"]))
    L.append("- Machine: %s, %s cores, %s MiB RAM, Linux %s, open files limit %s per process" %
             (m.get("cpu", "?"), m.get("cores", "?"), m.get("mem_mib", "?"), m.get("kernel", "?"),
              m.get("nofile_limit", "?")))
    L.append("- Everything on loopback on this one machine: opampd, the load generator (and "
             "etcd) share the 2 cores. Other jobs were running on the machine too, so each "
             "figure lists its load: the 1-minute load average / the share of both CPUs busy "
             "in the seconds just before it (100 % = both cores busy).")
    L.append("- Plain WebSocket agents, opampd with its default handshake pacing (2000 a "
             "second, so connect times include it). TLS agents, unpaced connects and a 5-node "
             "cluster with 97,500 agents: [SCALE.md](SCALE.md) (tests/bench/bench_scale.py).")
    L.append("")
    L.append("## Targets")
    L.append("")
    L.append("| target | measured | met |")
    L.append("|---|---|---|")

    def row(name, measured, ok):
        L.append("| %s | %s | %s |" % (name, measured, "n/a" if ok is None else
                                       ("yes" if ok else "**no**")))

    for key in ("idle-10k", "idle-19k"):
        x = r.get(key)
        if x:
            row("≤ 4 KiB RSS per idle WebSocket agent (%d agents)" % x["agents"],
                "%s KiB" % fmt(x["rss_per_agent_kib"], 2), x["rss_per_agent_kib"] <= 4.0)
    x = r.get("idle-10k", {}).get("fanout")
    if x:
        row("fan-out to 10k agents < 100 ms to 100 % received (from the 201)",
            "%s ms after the 201; %s ms after the request (median of %d)" % (
                fmt(x["median_p100_ms"]), fmt((x.get("from_request") or {}).get("p100_ms")),
                len(x["runs"])),
            x["median_p100_ms"] is not None and x["median_p100_ms"] < 100)
    w = r.get("writes")
    if w:
        for c in ("1", "16", "64"):
            o, e = w["opampd"].get(c), w["etcd"].get(c)
            if o and e and o["latency_ms"] and e["latency_ms"]:
                ok = o["writes_per_s"] >= e["writes_per_s"] and \
                    o["latency_ms"]["p99"] <= e["latency_ms"]["p99"]
                row("writes ≥ etcd, p99 no worse (concurrency %s)" % c,
                    "%s/s p99 %s ms vs etcd %s/s p99 %s ms" % (
                        fmt(o["writes_per_s"], 0), fmt(o["latency_ms"]["p99"]),
                        fmt(e["writes_per_s"], 0), fmt(e["latency_ms"]["p99"])), ok)
    s = r.get("idle-19k", {}).get("storm")
    if s:
        row("reconnect storm (%d agents): admin p99 < 200 ms, all back" % s["agents"],
            "p99 %s ms, all back: %s (%s s after restart)" % (
                fmt(s["admin"]["p99_ms"]), "yes" if s["all_back"] else "no",
                fmt(s["back_after_start_s"])),
            s["all_back"] and s["admin"]["p99_ms"] is not None and s["admin"]["p99_ms"] < 200)
    f = r.get("failover")
    if f:
        row("failover: writes accepted again within 2 s",
            "%s s median, %s s worst of %d" % (
                fmt(f["writes_accepted_again_s"], 2), fmt(f.get("writes_accepted_again_max_s"), 2),
                len(f.get("trials", [1]))),
            f["writes_accepted_again_s"] is not None and
            (f.get("writes_accepted_again_max_s") or f["writes_accepted_again_s"]) <= 2)
        row("failover: no agent disconnected on surviving nodes",
            str(f["disconnects_on_surviving_nodes_total"]),
            f["disconnects_on_surviving_nodes_total"] == 0)
    L.append("")

    if "idle-10k" in r or "idle-19k" in r:
        L.append("## 1. Idle WebSocket agents on one node")
        L.append("")
        L.append("| agents | RSS before | RSS connected | per agent | kernel slab per conn. pair |"
                 " connect all | connect p50/p99 | CPU idle (heartbeat 30 s) | per agent |"
                 " per message | load |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|")
        for key in ("idle-10k", "idle-19k"):
            x = r.get(key)
            if not x:
                continue
            i = x.get("idle", {})
            cm = x["connect"].get("connect_ms") or {}
            L.append("| %d | %s MiB | %s MiB | %s KiB | %s KiB | %s s (%s/s asked) | %s / %s ms |"
                     " %s %% of a core | %s µs/s | %s µs | %s |" % (
                         x["agents"], fmt(x["rss_kib_before"] / 1024), fmt(
                             x["rss_kib_connected"] / 1024), fmt(x["rss_per_agent_kib"], 2),
                         fmt(x.get("kernel_slab_kib_per_connection_pair"), 2),
                         fmt(x["connect"]["connect_all_s"]), x["connect"]["rate_asked"],
                         fmt(cm.get("p50"), 2), fmt(cm.get("p99"), 2),
                         fmt(100 * i["cpu_fraction_of_core"], 2) if i else "n/a",
                         fmt(i.get("cpu_us_per_agent_per_s"), 2) if i else "n/a",
                         fmt(i.get("cpu_us_per_message"), 1) if i else "n/a",
                         load_str(i if i.get("load") else x)))
        L.append("")
        x = r.get("idle-19k") or r.get("idle-10k")
        if x and x.get("idle"):
            per_kib = x["rss_per_agent_kib"]
            cpu_us = x["idle"]["cpu_us_per_agent_per_s"]
            L.append("Extrapolated from these per-agent costs (opampd only, not the kernel's "
                     "socket buffers): 100k agents ≈ %s MiB RSS and %s %% of one core; 1M "
                     "agents ≈ %s GiB and %s cores, with heartbeats every 30 s. The open files "
                     "limit (20,000 here) caps one process at ~19,900 connections; production "
                     "hosts raise it." % (
                         fmt(per_kib * 100000 / 1024, 0), fmt(cpu_us * 100000 / 1e4, 1),
                         fmt(per_kib * 1e6 / 1024 / 1024, 1), fmt(cpu_us * 1e6 / 1e6, 2)))
            L.append("")

    fo = [(k, r[k]["fanout"]) for k in ("fanout-1k", "idle-10k", "idle-19k")
          if k in r and r[k].get("fanout")]
    if fo:
        L.append("## 2. Fan-out: one publish matching every agent")
        L.append("")
        L.append("Times from the admin API's `201` to the share of agents that had received "
                 "the new version (measured at the agents, when their socket had the bytes), "
                 "to 100 % of them having sent APPLIED, and to the node having processed every "
                 "APPLIED (its message counter, polled every 10 ms). A negative time means the "
                 "agents had the version before the operator had the `201`: the node pushes "
                 "while applying, then answers. In brackets: the same from the moment the "
                 "request was sent. Median of the runs; a 4 KiB configuration. etcd 3.4 "
                 "anchor: one put to 10,000 watchers p99 692 ms.")
        L.append("")
        L.append("| agents | publish (request → 201) | 50 % | 99 % | 100 % | 100 % APPLIED sent |"
                 " node saw all APPLIED | opampd CPU | runs | highest load |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for k, x in fo:
            q = x.get("from_request", {})
            worst = max(x["runs"], key=lambda y: (y.get("load") or {}).get("loadavg_1m", 0))
            L.append("| %d | %s ms | %s (%s) ms | %s (%s) ms | %s (%s) ms | %s (%s) ms |"
                     " %s ms | %s s | %d | %s |" % (
                         x["agents"], fmt(Bench.median_of(x["runs"], "publish_ms")),
                         fmt(x["median_p50_ms"]), fmt(q.get("p50_ms")),
                         fmt(x["median_p99_ms"]), fmt(q.get("p99_ms")),
                         fmt(x["median_p100_ms"]), fmt(q.get("p100_ms")),
                         fmt(x["median_applied_p100_ms"]), fmt(q.get("applied_p100_ms")),
                         fmt(x["median_server_applied_ms"]),
                         fmt(Bench.median_of(x["runs"], "opampd_cpu_s"), 2), len(x["runs"]),
                         load_str(worst)))
        L.append("")

    mm = r.get("messages")
    if mm:
        L.append("## 3. Agent messages one core handles")
        L.append("")
        L.append("Agents in closed loops (next message as soon as the reply arrives); the "
                 "load generator runs on the other core.")
        L.append("")
        L.append("| message | agents | messages/s | opampd CPU | messages per CPU-second |"
                 " CPU per 1,000 msg/s | load |")
        L.append("|---|---|---|---|---|---|---|")
        for kind in ("heartbeat", "status"):
            x = mm.get(kind)
            if x:
                L.append("| %s | %d | %s | %s %% | %s | %s ms/s | %s |" % (
                    kind, x["agents_in_closed_loop"], x["messages_per_s"],
                    fmt(100 * x["opampd_cpu_fraction"]), x["messages_per_cpu_second"],
                    fmt(x["cpu_ms_per_1000_msgs_per_s"], 2), load_str(x)))
        L.append("")

    if w:
        L.append("## 4. Writes: 3-node opampd vs 3-node etcd, same disk, 4 KiB payload")
        L.append("")
        L.append("opampd: `POST /api/v1/configs/{name}` (a new version of a 4 KiB YAML "
                 "configuration) to the leader; etcd (%s): `POST /v3/kv/put` through the JSON "
                 "gateway to the leader, a 4 KiB value. %s s per concurrency." % (
                     w["etcd"].get("version", "?"), w["window_s"]))
        L.append("")
        L.append("| concurrency | opampd writes/s | p50 | p99 | etcd writes/s | p50 | p99 |"
                 " ratio writes/s | ratio p99 | load opampd / etcd |")
        L.append("|---|---|---|---|---|---|---|---|---|---|")
        for c in ("1", "16", "64"):
            o, e, q = w["opampd"].get(c), w["etcd"].get(c), w["ratio"].get(c, {})
            if not o or not e:
                continue
            ol, el = o["latency_ms"] or {}, e["latency_ms"] or {}
            L.append("| %s | %s | %s ms | %s ms | %s | %s ms | %s ms | %s | %s | %s, %s |" % (
                c, fmt(o["writes_per_s"], 0), fmt(ol.get("p50"), 2), fmt(ol.get("p99"), 2),
                fmt(e["writes_per_s"], 0), fmt(el.get("p50"), 2), fmt(el.get("p99"), 2),
                fmt(q.get("writes_per_s"), 2), fmt(q.get("p99"), 2), load_str(o), load_str(e)))
        L.append("")
        one = w.get("opampd_one_name") or {}
        if one:
            L.append("Each writer above has its own configuration (so 16 and 64 writers also mean "
                     "16 and 64 configurations). The same writers all on one configuration:")
            L.append("")
            L.append("| concurrency | opampd writes/s, one configuration | p50 | p99 | load |")
            L.append("|---|---|---|---|---|")
            for c in ("16", "64"):
                o = one.get(c)
                if o:
                    ol = o["latency_ms"] or {}
                    L.append("| %s | %s | %s ms | %s ms | %s |" % (
                        c, fmt(o["writes_per_s"], 0), fmt(ol.get("p50"), 2),
                        fmt(ol.get("p99"), 2), load_str(o)))
            L.append("")

    if s:
        L.append("## 5. Reconnect storm")
        L.append("")
        L.append("The node holding %d agents is stopped (SIGTERM) and started again on the same "
                 "port; agents reconnect with opamp-go's backoff (500 ms × 1.5, ±50 %%)." %
                 s["agents"])
        L.append("")
        L.append("| stop | start | all back after start | reconnected | UNAVAILABLE | 503 |"
                 " admin calls | admin p50 | admin p99 | admin max | errors | load |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
        a = s["admin"]
        L.append("| %s s | %s s | %s s | %s | %s | %s | %s | %s ms | %s ms | %s ms | %s | %s |" % (
            fmt(s["stop_s"], 2), fmt(s["start_s"], 2), fmt(s["back_after_start_s"], 2),
            s["reconnected"], s["unavailable"], s["http_503"], a["calls"], fmt(a["p50_ms"], 2),
            fmt(a["p99_ms"], 2), fmt(a["max_ms"], 2), a["errors"], load_str(s)))
        L.append("")

    if f:
        L.append("## 6. Failover under load")
        L.append("")
        L.append("3 nodes, %d agents on each, 4 writers sending to a follower (which "
                 "forwards to the leader); the leader is killed with SIGKILL, then restarted "
                 "before the next trial. Election timeout 0.8 s, randomised in [0.8, 1.6] s by raft." %
                 f["agents_per_node"])
        L.append("")
        L.append("| trial | writes accepted again | gap between successful writes | agents "
                 "disconnected on surviving nodes | writes ok / refused while read-only | load |")
        L.append("|---|---|---|---|---|---|")
        for i, t in enumerate(f.get("trials") or [f]):
            L.append("| %d | %s s | %s s | %s | %s / %s | %s |" % (
                i + 1, fmt(t["writes_accepted_again_s"], 3),
                fmt(t["gap_in_successful_writes_s"], 3),
                t["disconnects_on_surviving_nodes_total"], t["writes_ok"], t["writes_failed"],
                load_str(t)))
        L.append("")

    prof = os.path.join(out, "PROFILE.md")
    if os.path.exists(prof):
        L.append("## Profiles")
        L.append("")
        L.append("See [PROFILE.md](PROFILE.md) for the profiles of the benchmarks that miss "
                 "their targets.")
        L.append("")
    with open(os.path.join(out, "README.md"), "w") as fh:
        fh.write("\n".join(L))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default="build-bench")
    p.add_argument("--out", default="bench")
    p.add_argument("--tmp", default="/var/tmp", help="data directories (a real disk)")
    p.add_argument("--only", default="", help="comma-separated subset of " + ",".join(ALL))
    p.add_argument("--rate", type=float, default=4000, help="agent connections per second")
    p.add_argument("--max-agents", type=int, default=19500)
    p.add_argument("--idle-window", type=float, default=60)
    p.add_argument("--flood-agents", type=int, default=256)
    p.add_argument("--flood-window", type=float, default=10)
    p.add_argument("--write-window", type=float, default=10)
    p.add_argument("--failover-agents", type=int, default=2000)
    p.add_argument("--failover-trials", type=int, default=3)
    p.add_argument("--quiet-budget", type=float, default=600,
                   help="seconds in all spent waiting for a quiet machine")
    p.add_argument("--quiet-wait", type=float, default=90,
                   help="longest wait before one measurement")
    p.add_argument("--keep", action="store_true", help="keep the data directories")
    p.add_argument("--summary-only", action="store_true",
                   help="rewrite bench/README.md from bench/results")
    a = p.parse_args()
    if a.summary_only:
        write_readme(a.out)
        return
    for b in ("opampd/opampd", "tests/bench/loadgen"):
        if not os.access(os.path.join(a.build, b), os.X_OK):
            sys.exit("bench: %s/%s missing: build first" % (a.build, b))
    # `timeout` in run.sh sends SIGTERM: unwind so that every process we started is stopped.
    def on_term(sig, frame):
        raise SystemExit("bench: stopped by signal %d" % sig)

    signal.signal(signal.SIGTERM, on_term)
    Bench(a).run()


if __name__ == "__main__":
    main()
