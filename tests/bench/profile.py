#!/usr/bin/env python3
"""Profiles for bench/PROFILE.md, with `perf record -g` (software clock: this VM has no
hardware counters), on the same set-ups as bench.py.

writes: the leader (or with --follower a follower) of a 3-node cluster while `loadgen writes` runs at one concurrency; prints
        writes/s, latency and each node's CPU per write.
idle:   one node holding N idle WebSocket agents (heartbeat 30 s) for the window; prints RSS per
        agent and CPU per agent.

Then the top of `perf report` (self time by symbol).

    python3 tests/bench/profile.py writes --build build-perf [--concurrency 16] [--window 10]
    python3 tests/bench/profile.py idle --build build-perf [--agents 10000] [--window 30]
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["writes", "idle"])
    p.add_argument("--build", default="build-bench")
    p.add_argument("--agents", type=int, default=10000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--window", type=float, default=10)
    p.add_argument("--tmp", default="/var/tmp")
    p.add_argument("--perf-out", default="/tmp/opampd.perf.data")
    p.add_argument("--no-perf", action="store_true", help="only measure (CPU per write)")
    p.add_argument("--follower", action="store_true", help="writes: record a follower, not the leader")
    p.add_argument("--prefill", type=float, default=0,
                   help="writes: first grow the store with 64 writers for this many seconds "
                        "(bench.py's write runs share one cluster, whose store grows)")
    p.add_argument("--prefill-one", action="store_true",
                   help="writes: the prefill writes versions of one configuration, as bench.py's "
                        "first runs do")
    a = p.parse_args()
    args = argparse.Namespace(build=a.build, out="/tmp/opampd-profile-out", tmp=a.tmp, only="",
                              rate=4000, max_agents=0, idle_window=0, flood_agents=0,
                              flood_window=0, write_window=a.window, failover_agents=0,
                              failover_trials=0, quiet_budget=0, quiet_wait=0, keep=False,
                              summary_only=False)
    b = bench.Bench(args)
    if a.mode == "idle":
        return idle(a, b)
    perf = None
    try:
        nodes = b.cluster("profile")
        leader = b.leader_of(nodes)
        # Warm up (2 s): the first write registers the signing key.
        b.a.write_window = 2
        b.writes("opampd", ["http://127.0.0.1:%d/api/v1/configs" % leader.admin_port],
                 leader.admin.token, 1, "warmup", ["--name-prefix", "warm-"])
        if a.prefill > 0:
            b.a.write_window = a.prefill
            r = b.writes("opampd", ["http://127.0.0.1:%d/api/v1/configs" % leader.admin_port],
                         leader.admin.token, 64, "prefill",
                         ["--names", "1", "--name-prefix", "one-"] if a.prefill_one
                         else ["--name-prefix", "pre-"])
            print("prefill: %d writes" % r["ok"])
        recorded = next(n for n in nodes if n is not leader) if a.follower else leader
        perf = start_perf(a, recorded.proc.pid)
        b.a.write_window = a.window
        cpu0 = [n.cpu_s() for n in nodes]
        io0 = [proc_write_bytes(n.proc.pid) for n in nodes]
        load = bench.Quiet.loadavg()
        r = b.writes("opampd", ["http://127.0.0.1:%d/api/v1/configs" % leader.admin_port],
                     leader.admin.token, a.concurrency, "profile")
        cpu1 = [n.cpu_s() for n in nodes]
        io1 = [proc_write_bytes(n.proc.pid) for n in nodes]
        if perf is not None:
            perf.send_signal(2)
            perf.wait(60)
        n = r["ok"]
        lat = r.get("latency_ms") or {}
        print("load %.2f  writes/s %.0f  p50 %s ms  p99 %s ms  writes %d" % (
            load, r["writes_per_s"], lat.get("p50"), lat.get("p99"), n))
        for node, c0, c1, w0, w1 in zip(nodes, cpu0, cpu1, io0, io1):
            role = "leader" if node is leader else "follower"
            print("node %d (%s): %.2f s CPU, %.0f us and %.1f KiB written per write" % (
                node.id, role, c1 - c0, (c1 - c0) / max(n, 1) * 1e6,
                (w1 - w0) / max(n, 1) / 1024))
        for node in nodes:
            node.stop()
    finally:
        b.cleanup()
        shutil.rmtree(b.root, ignore_errors=True)
    report(a, perf)


def proc_write_bytes(pid):
    """Bytes the process asked to write to files (/proc/<pid>/io wchar; sockets count too)."""
    with open("/proc/%d/io" % pid) as f:
        return next(int(l.split()[1]) for l in f if l.startswith("wchar:"))


def start_perf(a, pid):
    if a.no_perf:
        return None
    perf = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "999", "--call-graph", "dwarf,16384",
                             "-o", a.perf_out, "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    return perf


def idle(a, b):
    perf = None
    try:
        node = b.node("profile-idle")
        node.start()
        time.sleep(1.0)
        rss0 = node.rss_kib()
        lg, conn = b.connect(node, a.agents, "profile", 1, "profile-idle")
        time.sleep(3)
        rss1 = node.rss_kib()
        perf = start_perf(a, node.proc.pid)
        load = bench.Quiet.loadavg()
        c0, m0 = node.cpu_s(), node.admin.metric("opampd_messages_websocket_total")
        time.sleep(a.window)
        c1, m1 = node.cpu_s(), node.admin.metric("opampd_messages_websocket_total")
        if perf is not None:
            perf.send_signal(2)
            perf.wait(60)
        print("load %.2f  agents %d  connect %.1f s  RSS %.2f KiB per agent  idle CPU %.2f %% "
              "of a core (%.2f us/s per agent), %d messages" % (
                  load, a.agents, conn["connect_all_s"], (rss1 - rss0) / a.agents,
                  100 * (c1 - c0) / a.window, (c1 - c0) / a.window / a.agents * 1e6, m1 - m0))
        node.stop()
    finally:
        b.cleanup()
        shutil.rmtree(b.root, ignore_errors=True)
    report(a, perf)


def report(a, perf):
    if perf is not None:
        subprocess.run(["perf", "report", "-i", a.perf_out, "--no-children", "--stdio",
                        "--percent-limit", "1.5", "-g", "none", "--sort", "symbol"],
                       stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
