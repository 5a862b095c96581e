#!/usr/bin/env python3
"""Measures hello-stateful against its targets and writes a markdown table.

The targets: `/store` (64 B bodies, 32 connections) 25,000 req/s, `/get` 30,000 req/s, RSS 2 MiB
idle and 16 MiB at 256 connections, 1 MiB for the static binary and for the image, start-up under
10 ms, SIGTERM to exit under 100 ms.

Every measurement starts a fresh server on 127.0.0.1 with its own data file, so the runs do not
share state. Load comes from wrk (one process, on the same machine as the server). Records per
fsync come from the server's own trace log (RUST_LOG=hello_stateful::storage=trace logs
"synced N records" once per fsync): one short line per sync costs far less than tracing
every syscall with strace, and it is the same in every run.

Nothing here asserts: targets are printed next to the numbers with a met/missed mark.
"""

import argparse
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HOST = "127.0.0.1"
DNS_ADDR = "127.0.53.201"  # loopback address for this bench's own dnsmasq
SERVICE = "hello-stateful-service"
ZONE_NAME = f"{SERVICE}.default.svc.cluster.local"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def healthz_ok(port, timeout=0.5, answer=b"HTTP/1.1 200"):
    """One GET /healthz on a fresh connection; True when the reply starts with `answer` (a 200;
    the seed's Go program has no /healthz, and any HTTP answer says it is up)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(answer)
    except OSError:
        return False


class Server:
    """A server process on a free port with a fresh data file in `workdir`; `wrap` is a command
    that execs the binary given as its last argument (the seed's mount namespace), `ready` what
    the answer to GET /healthz starts with once the server is up."""

    def __init__(self, binary, workdir, env=None, trace=True, wrap=(), ready=b"HTTP/1.1 200"):
        self.port = free_port()
        self.data = os.path.join(workdir, f"data-{self.port}")
        self.log_path = os.path.join(workdir, f"log-{self.port}")
        e = dict(os.environ)
        e.update(
            LISTEN_ADDR=f"{HOST}:{self.port}",
            DATA_FILE=self.data,
            RUST_LOG="info,hello_stateful::storage=trace" if trace else "warn",
        )
        e.update(env or {})
        self.log_file = open(self.log_path, "wb")
        self.started = time.perf_counter()
        self.proc = subprocess.Popen([*wrap, binary], env=e, stdout=self.log_file, stderr=self.log_file)
        deadline = time.monotonic() + 10
        while not healthz_ok(self.port, answer=ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start; log: {open(self.log_path).read()}")
            time.sleep(0.005)

    def url(self, path):
        return f"http://{HOST}:{self.port}{path}"

    def status(self):
        """VmRSS and VmHWM in KiB from /proc."""
        out = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":")
                    out[key] = int(value.split()[0])
        return out

    def log_lines(self):
        """The number of lines the server has logged so far."""
        self.log_file.flush()
        with open(self.log_path, "rb") as f:
            return sum(1 for _ in f)

    def syncs(self):
        """(fsync calls, records they covered) from the trace log."""
        self.log_file.flush()
        counts = [int(m) for m in re.findall(rb"synced (\d+) records", open(self.log_path, "rb").read())]
        return len(counts), sum(counts)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


class RssPoller(threading.Thread):
    """Polls VmRSS every 20 ms while a load runs; VmHWM at the end is the peak."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.stop_flag, self.peak = server, threading.Event(), 0

    def run(self):
        while not self.stop_flag.is_set():
            try:
                self.peak = max(self.peak, self.server.status()["VmRSS"])
            except (OSError, KeyError):
                return
            time.sleep(0.02)

    def finish(self):
        self.stop_flag.set()
        self.join()
        try:
            return max(self.peak, self.server.status()["VmHWM"])
        except (OSError, KeyError):
            return self.peak


def parse_duration(text):
    m = re.match(r"([\d.]+)(us|ms|s|m)$", text)
    value, unit = float(m.group(1)), m.group(2)
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def wrk(url, conns, seconds, script=None):
    threads = 1 if conns == 1 else 2
    cmd = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "2s"]
    if script:
        cmd += ["-s", script]
    cmd.append(url)
    port = int(url.split(":")[2].split("/")[0])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Connections whose request bytes sit unread on the server side in every snapshot from 1 s
    # in to 1 s before the end, having received nothing more meanwhile, were never served
    # during the run: wrk reports nothing for them. (A busy connection may have unread bytes in
    # every snapshot too, but each time of a later request.)
    snaps = []
    t0 = time.monotonic()
    time.sleep(min(1.0, seconds / 3))
    while time.monotonic() - t0 < seconds - 1 or len(snaps) < 2:
        snaps.append(unread_connections(port))
        time.sleep(0.5)
    out, err = proc.communicate()
    if proc.returncode:
        raise RuntimeError(f"wrk failed: {err}")
    result = {"cmd": " ".join(cmd), "raw": out}
    stuck = set.intersection(*(set(s) for s in snaps)) if snaps else set()
    result["starved"] = sum(1 for peer in stuck if len({s[peer] for s in snaps}) == 1)
    result["rps"] = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    result["requests"] = int(re.search(r"(\d+) requests in", out).group(1))
    for pct in ("50", "99"):
        result["p" + pct] = parse_duration(re.search(rf"\s{pct}%\s+(\S+)", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    result["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: (.*)", out)
    result["errors"] = m.group(1).strip() if m else "none"
    # A request still unanswered after --timeout (2 s) is counted here, not in the latencies.
    m = re.search(r"timeout (\d+)", result["errors"])
    result["timeouts"] = int(m.group(1)) if m else 0
    return result


def unread_connections(port):
    """Established connections to `port` with unread bytes (Recv-Q > 0): peer address -> the
    bytes the connection has received so far (`ss -i`'s bytes_received)."""
    out = subprocess.run(["ss", "-Htni", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    unread, peer = {}, None
    for line in out.splitlines():
        fields = line.split()
        if not line[:1].isspace() and len(fields) >= 4:
            peer = fields[3] if int(fields[0]) > 0 else None
        elif peer is not None:
            received = re.search(r"bytes_received:(\d+)", line)
            unread[peer] = int(received.group(1)) if received else 0
            peer = None
    return unread


def post_script(workdir, size):
    """A wrk script that POSTs `size` bytes (the same body each time: durability is per request,
    whatever the bytes)."""
    path = os.path.join(workdir, f"post{size}.lua")
    with open(path, "w") as f:
        f.write(f'wrk.method = "POST"\nwrk.body = string.rep("x", {size - 1}) .. "\\n"\n')
    return path


def start_dnsmasq(ttl):
    cmd = [
        "/usr/sbin/dnsmasq", "--no-resolv", "--no-hosts", "--keep-in-foreground",
        "--conf-file=/dev/null", f"--listen-address={DNS_ADDR}", "--bind-interfaces",
        "--port=53", f"--local-ttl={ttl}",
    ]
    for i in range(3):
        cmd.append(f"--srv-host={ZONE_NAME},hello-stateful-{i}.{ZONE_NAME},8000")
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE)
    time.sleep(0.2)
    if proc.poll() is not None:
        raise RuntimeError(f"dnsmasq did not start: {proc.stderr.read().decode()}")
    return proc, " ".join(cmd)


def measure_startup(binary, workdir, runs=20):
    """Process start (just before fork/exec) to the first 200 from /healthz, polling with fresh
    connections as fast as they fail. The poll's own cost (~50 us per try) is included."""
    times = []
    for i in range(runs):
        port = free_port()
        env = dict(os.environ, LISTEN_ADDR=f"{HOST}:{port}",
                   DATA_FILE=os.path.join(workdir, f"start-{i}"), RUST_LOG="warn")
        t0 = time.perf_counter()
        proc = subprocess.Popen([binary], env=env, stderr=subprocess.DEVNULL)
        while not healthz_ok(port, timeout=1):
            if proc.poll() is not None:
                raise RuntimeError("server exited during start-up")
        times.append((time.perf_counter() - t0) * 1000)
        proc.send_signal(signal.SIGTERM)
        proc.wait()
    return statistics.median(times), min(times), max(times)


def measure_sigterm(binary, workdir, load_url=None, script=None, runs=5):
    """SIGTERM to process exit (waitpid returns), idle or under a 256-connection wrk load."""
    times, codes = [], []
    for _ in range(runs):
        server = Server(binary, workdir, trace=False)
        load = None
        if load_url:
            cmd = ["wrk", "-t2", "-c256", "-d3s", "--timeout", "5s"]
            if script:
                cmd += ["-s", script]
            load = subprocess.Popen(cmd + [server.url(load_url)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        t0 = time.perf_counter()
        server.proc.send_signal(signal.SIGTERM)
        codes.append(server.proc.wait(10))
        times.append((time.perf_counter() - t0) * 1000)
        if load:
            load.wait()
        server.stop()
    return statistics.median(times), max(times), codes


def measure_burst(binary, workdir, conns=32, rounds=10):
    """Connections arriving in one burst, as when a proxy opens many at once: the server is
    paused (SIGSTOP) while `conns` clients connect and send GET /healthz, then resumed; time from
    SIGCONT to the last first answer. tiny_http's pool queues most of such a burst; the
    connection watch's probes free them (src/connections.rs)."""
    worst = []
    for _ in range(rounds):
        server = Server(binary, workdir, trace=False)
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGSTOP)
        socks = [socket.create_connection((HOST, server.port)) for _ in range(conns)]
        for s in socks:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        t0 = time.perf_counter()
        server.proc.send_signal(signal.SIGCONT)
        for s in socks:
            s.settimeout(10)
            s.recv(64)
        worst.append((time.perf_counter() - t0) * 1000)
        for s in socks:
            s.close()
        server.stop()
    return statistics.median(worst), max(worst)


def measure_idle_cpu(binary, workdir, seconds=10):
    """CPU time (user + system, all threads) an idle server spends per second: the connection
    watch."""
    server = Server(binary, workdir, trace=False)
    time.sleep(1)
    tick = os.sysconf("SC_CLK_TCK")

    def cpu():
        with open(f"/proc/{server.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / tick

    before = cpu()
    time.sleep(seconds)
    used = cpu() - before
    server.stop()
    return used / seconds * 1000


def image_size(repo):
    tool = os.environ.get("CONTAINER_TOOL") or ("podman" if shutil.which("podman") else "docker")
    if not shutil.which(tool):
        return None, f"no container tool ({tool}) installed"
    r = subprocess.run(["make", "image", f"CONTAINER_TOOL={tool}"], cwd=repo,
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"`make image CONTAINER_TOOL={tool}` failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}"
    m = re.search(r" -t (\S+)", r.stderr + r.stdout)
    if not m:
        return None, "could not find the image reference in make's output"
    ref = m.group(1)
    size = subprocess.run([tool, "image", "inspect", "--format", "{{.Size}}", ref],
                          capture_output=True, text=True, check=True).stdout.strip()
    return int(size), f"`make image CONTAINER_TOOL={tool}`; `{tool} image inspect --format '{{{{.Size}}}}' {ref}`"


def disk_of(path):
    """The file system type of `path` and whether its disk is rotational: what matters for the
    numbers, without the device name or path (RESULTS.md is committed)."""
    out = subprocess.run(["df", "-T", path], capture_output=True, text=True).stdout.splitlines()[-1].split()
    dev, fstype = out[0], out[1]
    name = os.path.basename(os.path.realpath(dev))
    rotational = "?"
    for cand in (name, re.sub(r"\d+$", "", name)):
        p = f"/sys/block/{cand}/queue/rotational"
        if os.path.exists(p):
            rotational = "rotational" if open(p).read().strip() == "1" else "non-rotational"
            break
    return f"{fstype}, {rotational}"


# What a pod's cluster DNS answers with: CoreDNS's kubernetes plugin gives its records a 5 s TTL
# by default. The seed looks the Service up on every /get whatever the TTL; ours caches for it.
SEED_DNS_TTL = 5
STORE_RATIO_TARGET, GET_RATIO_TARGET = 1.0, 2.0


def pod_resolv_conf(workdir):
    """A pod's resolv.conf pointing at this bench's dnsmasq; returns its path."""
    path = os.path.join(workdir, "resolv.conf")
    with open(path, "w") as f:
        f.write(f"nameserver {DNS_ADDR}\nsearch default.svc.cluster.local svc.cluster.local "
                "cluster.local\noptions ndots:5\n")
    return path


SEED_NAMESPACE = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                  'mount --bind "$1" /etc/resolv.conf && exec "$2"', "sh"]


def seed_namespace(resolv):
    """A command that runs its last argument with `resolv` as its /etc/resolv.conf. Go's own
    resolver reads that path and nothing else (no variable names another file), so the seed's /get
    sees the bench's dnsmasq and the pod's search list only in a private mount namespace with
    `resolv` bind-mounted over /etc/resolv.conf; the rest of the machine keeps its own. The
    resolver, its search list and ndots logic stay Go's, and the program the seed's: a cgo build
    would swap in glibc's resolver, and a changed lookup would no longer be the seed's.
    `unshare` execs (no fork) and sh execs the binary, so the process started is the seed's.
    Needs root (None without it, or without unshare), as the bench's dnsmasq on port 53 does."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return None
    return SEED_NAMESPACE + [resolv]


def side_by_side(ours, seed, workdir, path, secs, pairs, script=None, ours_env=None, seed_wrap=()):
    """`pairs` pairs of runs of the same wrk command at 32 connections, ours then the seed's
    (A B A B ...), each against a fresh server and data file. Returns [(ours, seed)] of wrk
    results; the seed's also count the lines it logged, one per failed request (a failed open or
    lookup: a failed LookupSRV still answers 200, with no records)."""
    out = []
    for i in range(pairs):
        pair = []
        for name, binary, env, wrap, ready in (("hello-stateful", ours, ours_env, (), b"HTTP/1.1 200"),
                                               ("seed", seed, None, seed_wrap, b"HTTP/1.1 ")):
            server = Server(binary, workdir, env=env, trace=False, wrap=wrap, ready=ready)
            r = wrk(server.url(path), 32, secs, script)
            r["logged"] = server.log_lines()
            server.stop()
            log(f"bench: {path} pair {i + 1} {name}: {r['rps']:,.0f} req/s")
            pair.append(r)
        out.append(tuple(pair))
    return out


def versus_seed(args, workdir, script, cmds):
    """The side-by-side runs: /store 64 B, then /get through a dnsmasq with the Service's
    records. Returns {endpoint: pairs, or a reason it was not measured}."""
    secs, pairs = args.seconds, args.pairs
    results = {"/store 64 B": side_by_side(args.musl_bin, args.seed_bin, workdir, "/store", secs,
                                           pairs, script)}
    resolv = pod_resolv_conf(workdir)
    wrap = seed_namespace(resolv)
    if wrap is None:
        reason = ("needs root (the seed's /get resolves through a resolv.conf bind-mounted in a "
                  "private mount namespace)")
        log(f"SKIPPED: /get side by side with the seed: {reason}")
        results["/get"] = reason
        return results
    dns, dns_cmd = start_dnsmasq(SEED_DNS_TTL)
    try:
        results["/get"] = side_by_side(args.musl_bin, args.seed_bin, workdir, "/get", secs, pairs,
                                       ours_env={"RESOLV_CONF": resolv}, seed_wrap=wrap)
    finally:
        dns.terminate()
        dns.wait()
    cmds.append(dns_cmd)
    cmds.append(shlex.join(SEED_NAMESPACE + ["resolv.conf", "target/go/hello-stateful-seed"]))
    return results


def go_version(binary):
    """The Go release a binary was built with (`go version FILE` prints `FILE: go1.N.M`)."""
    r = subprocess.run(["go", "version", binary], capture_output=True, text=True)
    return r.stdout.split()[-1] if r.returncode == 0 and r.stdout.split() else "Go of unknown version"


def seed_lines(results, args):
    """The side-by-side section of RESULTS.md: per pair each side's req/s and latency and the
    ratio, then the median ratio next to its target."""
    lines = ["## Side by side with the seed's Go program\n",
             f"The same wrk command for both servers (`wrk -t2 -c32 -d{args.seconds}s --latency --timeout 2s`, "
             "with the 64 B POST script for `/store`), alternating: hello-stateful, then the seed's "
             f"program, {args.pairs} pairs, each run against a fresh server and data file. "
             "hello-stateful is the static musl build that ships and answers each `/store` after an "
             "fsync covers it; the seed (benches/seed: the notes' program with its missing `fmt` import "
             "added and its address and data file overridable, "
             f"{go_version(args.seed_bin)}, `CGO_ENABLED=0`) appends without syncing and looks the "
             "Service up on every `/get`. For `/get` both resolve through the same dnsmasq "
             f"(TTL {SEED_DNS_TTL} s, what CoreDNS gives a headless Service's records) with a pod's "
             "search list and `ndots:5`: hello-stateful reads that resolv.conf from `RESOLV_CONF`; the "
             "seed, since Go's resolver reads only /etc/resolv.conf, runs in a private mount namespace "
             f"with the file bind-mounted there (`{shlex.join(SEED_NAMESPACE)} resolv.conf SEED`). The ratio is hello-stateful's req/s over the seed's.\n",
             "| endpoint | pair | hello-stateful req/s | p50 / p99 | seed req/s | p50 / p99 | ratio | problems |",
             "|---|---:|---:|---:|---:|---:|---:|---|"]
    summary = []
    for endpoint, target in (("/store 64 B", STORE_RATIO_TARGET), ("/get", GET_RATIO_TARGET)):
        pairs = results[endpoint]
        if isinstance(pairs, str):
            lines.append(f"| {endpoint} | | not measured: {pairs} | | | | | |")
            summary.append(f"{endpoint}: not measured ({pairs})")
            continue
        ratios = []
        for i, (ours, seed) in enumerate(pairs, 1):
            ratio = ours["rps"] / seed["rps"] if seed["rps"] else float("inf")
            ratios.append(ratio)
            lines.append(f"| {endpoint} | {i} | {ours['rps']:,.0f} | {fmt_ms(ours['p50'])} / {fmt_ms(ours['p99'])} | "
                         f"{seed['rps']:,.0f} | {fmt_ms(seed['p50'])} / {fmt_ms(seed['p99'])} | {ratio:.2f}x | "
                         f"{problems(ours, seed)} |")
        median = statistics.median(ratios)
        verdict = f"≥ {target:.1f}x: {mark(median >= target)}"
        lines.append(f"| {endpoint} | median | | | | | **{median:.2f}x** | target {verdict} |")
        summary.append(f"{endpoint}: median {median:.2f}x (pairs {', '.join(f'{r:.2f}x' for r in ratios)}), "
                       f"target {verdict}")
    lines.append("\nSummary: " + "; ".join(summary) + ".")
    return lines


def problems(ours, seed):
    """What makes a pair's ratio suspect: error answers, socket errors, unserved connections, and
    the seed's logged failures (answered 200 all the same)."""
    out = []
    for name, r in (("hello-stateful", ours), ("seed", seed)):
        if r["non2xx"]:
            out.append(f"{name}: {r['non2xx']} non-2xx")
        if r["errors"] != "none":
            out.append(f"{name}: socket errors {r['errors']}")
        if r["starved"]:
            out.append(f"{name}: {r['starved']} connections never served")
    if seed["logged"]:
        out.append(f"seed: {seed['logged']} failures logged")
    return "; ".join(out) or "none"


def mark(ok):
    return "met" if ok else "**missed**"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--musl-bin", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=int, default=int(os.environ.get("BENCH_SECONDS", "4")))
    ap.add_argument("--no-image", action="store_true")
    ap.add_argument("--seed-bin", required=True, help="the seed's Go program (benches/seed)")
    ap.add_argument("--pairs", type=int, default=int(os.environ.get("BENCH_PAIRS", "3")),
                    help="side-by-side pairs per endpoint (at least 3; BENCH_PAIRS)")
    ap.add_argument("--seed-only", action="store_true",
                    help="only the side-by-side runs, printed; RESULTS.md is left as it is")
    args = ap.parse_args()
    if args.pairs < 3:
        ap.error("--pairs: at least 3, for a median that one odd run cannot move")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    secs = args.seconds
    # The data files live next to the repository, on the disk a developer's `make run` uses.
    under_target = os.path.isdir(os.path.join(repo, "target"))
    workdir = tempfile.mkdtemp(prefix="bench-", dir=os.path.join(repo, "target") if under_target else None)
    load_before = os.getloadavg()
    disk = disk_of(workdir)
    rows = []  # (what, value, target, met-or-None)
    store_rows = []
    cmds = []
    procs = []

    def cleanup():
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait()
        shutil.rmtree(workdir, ignore_errors=True)

    try:
        scripts = {64: post_script(workdir, 64), 4096: post_script(workdir, 4096)}
        if args.seed_only:
            print("\n".join(seed_lines(versus_seed(args, workdir, scripts[64], cmds), args)))
            return
        peak_256 = 0
        for label, binary in (("glibc", args.bin),):
            for size in (64, 4096):
                for conns in (1, 32, 256):
                    server = Server(binary, workdir)
                    poller = RssPoller(server)
                    poller.start()
                    log(f"bench: /store {size} B, {conns} connections")
                    r = wrk(server.url("/store"), conns, secs, scripts[size])
                    peak = poller.finish()
                    syncs, records = server.syncs()
                    server.stop()
                    if conns == 256:
                        peak_256 = max(peak_256, peak)
                    store_rows.append((f"/store {size} B", conns, r, syncs, records))
                    cmds.append(r["cmd"].replace(server.url("/store"), "http://127.0.0.1:PORT/store")
                                .replace(workdir + "/", ""))
        # The binary that ships (static musl, musl's allocator) at 32 and 256 connections.
        peak_256_musl = 0
        for conns in (32, 256):
            server = Server(args.musl_bin, workdir)
            poller = RssPoller(server)
            poller.start()
            log(f"bench: /store 64 B, {conns} connections, musl build")
            r = wrk(server.url("/store"), conns, secs, scripts[64])
            peak = poller.finish()
            syncs, records = server.syncs()
            server.stop()
            if conns == 256:
                peak_256_musl = peak
            store_rows.append(("/store 64 B (musl build)", conns, r, syncs, records))
        # The ceiling of this HTTP front plus wrk on this machine: a reply with no work at all.
        server = Server(args.bin, workdir, trace=False)
        log("bench: /healthz, 32 connections (reference)")
        healthz = wrk(server.url("/healthz"), 32, secs)
        server.stop()

        # /get against a local dnsmasq: cached (TTL 60 s) and uncached (TTL 0: every request
        # is a DNS exchange).
        resolv = pod_resolv_conf(workdir)
        get_rows = []
        for label, ttl in (("cached (TTL 60 s)", 60), ("uncached (TTL 0)", 0)):
            dns, dns_cmd = start_dnsmasq(ttl)
            procs.append(dns)
            try:
                server = Server(args.bin, workdir, env={"RESOLV_CONF": resolv}, trace=False)
                log(f"bench: /get {label}")
                r = wrk(server.url("/get"), 32, secs)
                server.stop()
            finally:
                dns.terminate()
                dns.wait()
            get_rows.append((label, r))
            cmds.append(dns_cmd)
            cmds.append(r["cmd"].replace(server.url("/get"), "http://127.0.0.1:PORT/get"))

        # The ratio targets: the same loads side by side with the seed's Go program.
        log("bench: side by side with the seed's Go program")
        seed_results = versus_seed(args, workdir, scripts[64], cmds)

        # Memory: idle RSS one second after start-up.
        server = Server(args.bin, workdir, trace=False)
        time.sleep(1)
        idle_rss = server.status()["VmRSS"]
        server.stop()
        server = Server(args.musl_bin, workdir, trace=False)
        time.sleep(1)
        idle_rss_musl = server.status()["VmRSS"]
        server.stop()

        log("bench: connections in one burst")
        burst = measure_burst(args.bin, workdir)
        log("bench: idle CPU")
        idle_cpu = measure_idle_cpu(args.musl_bin, workdir)

        log("bench: start-up")
        start_med, start_min, start_max = measure_startup(args.bin, workdir)
        start_musl = measure_startup(args.musl_bin, workdir)
        log("bench: SIGTERM idle")
        term_idle = measure_sigterm(args.bin, workdir)
        log("bench: SIGTERM under load")
        term_load = measure_sigterm(args.bin, workdir, "/store", scripts[64])

        bin_size = os.path.getsize(args.musl_bin)
        if args.no_image:
            img_size, img_note = None, "skipped (--no-image)"
        else:
            log("bench: image")
            img_size, img_note = image_size(repo)
    finally:
        cleanup()

    load_after = os.getloadavg()
    # ---- the table ----
    lines = []
    lines.append("# Benchmark results\n")
    lines.append(f"Generated by `make bench` (benches/run) on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.\n")
    lines.append("## Machine\n")
    lines.append(f"- CPU: {os.cpu_count()} cores ({cpu_model()})")
    lines.append(f"- kernel: {platform.release()}")
    where = ("a temporary directory under the build output (`target/`)" if under_target
             else "the system's temporary directory")
    lines.append(f"- data files: {disk}, in {where}")
    lines.append(f"- load average before / after: {fmt_load(load_before)} / {fmt_load(load_after)}"
                 " (wrk runs on the same machine as the server)")
    lines.append(f"- server: `{os.path.relpath(args.bin, repo)}` (glibc release build) unless marked musl\n")
    lines.append("## /store (durable: each 200 is sent after an fsync covers the record)\n")
    lines.append("| body | connections | req/s | p50 | p99 | records per fsync | non-2xx | connections never served | target |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for what, conns, r, syncs, records in store_rows:
        target = ""
        if what.startswith("/store 64 B") and conns == 32:
            target = f"≥ 25,000 req/s: {mark(r['rps'] >= 25000)}"
        per = f"{records / syncs:.1f}" if syncs else "n/a"
        lines.append(f"| {what[7:]} | {conns} | {r['rps']:,.0f} | {fmt_ms(r['p50'])} | "
                     f"{fmt_ms(r['p99'])} | {per} ({records:,} in {syncs:,}) | {r['non2xx']} | {r['starved']} of {conns} | {target} |")
    lines.append(f"\nReference: `GET /healthz` (no work) at 32 connections: {healthz['rps']:,.0f} req/s, "
                 f"p50 {fmt_ms(healthz['p50'])}, p99 {fmt_ms(healthz['p99'])}: the most this HTTP front and wrk "
                 "reach together on this machine.")
    lines.append("\n## /get (SRV lookup through a local dnsmasq, 3 records, 32 connections)\n")
    lines.append("| answer | req/s | p50 | p99 | non-2xx | target |")
    lines.append("|---|---:|---:|---:|---:|---|")
    for label, r in get_rows:
        lines.append(f"| {label} | {r['rps']:,.0f} | {fmt_ms(r['p50'])} | {fmt_ms(r['p99'])} | "
                     f"{r['non2xx']} | ≥ 30,000 req/s: {mark(r['rps'] >= 30000)} |")
    lines.append("")
    lines.extend(seed_lines(seed_results, args))
    lines.append("\n## Size, memory, start-up, shutdown\n")
    lines.append("| measure | value | target |")
    lines.append("|---|---:|---|")
    lines.append(f"| RSS idle (1 s after start) | {idle_rss / 1024:.2f} MiB (musl: {idle_rss_musl / 1024:.2f} MiB) | ≤ 2 MiB: {mark(idle_rss <= 2048)} (musl: {mark(idle_rss_musl <= 2048)}) |")
    lines.append(f"| RSS peak, 256 connections (/store, VmHWM) | {peak_256 / 1024:.2f} MiB (musl: {peak_256_musl / 1024:.2f} MiB) | ≤ 16 MiB: {mark(peak_256 <= 16384)} (musl: {mark(peak_256_musl <= 16384)}) |")
    lines.append(f"| binary (static musl, stripped) | {bin_size:,} B | ≤ 1 MiB: {mark(bin_size <= 1048576)} |")
    if img_size is None:
        lines.append(f"| image | not measured: {img_note} | ≤ 1 MiB |")
    else:
        lines.append(f"| image | {img_size:,} B | ≤ 1 MiB: {mark(img_size <= 1048576)} |")
    lines.append(f"| start-up to first 200 /healthz (median of 20; min–max) | {start_med:.2f} ms ({start_min:.2f}–{start_max:.2f}); musl {start_musl[0]:.2f} ms | < 10 ms: {mark(start_med < 10)} |")
    lines.append(f"| SIGTERM to exit, idle (median of 5; max) | {term_idle[0]:.1f} ms ({term_idle[1]:.1f}); exit codes {sorted(set(term_idle[2]))} | < 100 ms: {mark(term_idle[0] < 100)} |")
    lines.append(f"| SIGTERM to exit, 256-connection /store load (median of 5; max) | {term_load[0]:.1f} ms ({term_load[1]:.1f}); exit codes {sorted(set(term_load[2]))} | (none; design: < 1 s) {mark(term_load[1] < 1000)} |")
    lines.append(f"| 32 connections opened in one burst: slowest first answer (median of 10; max) | {burst[0]:.1f} ms ({burst[1]:.1f}) | (none) |")
    lines.append(f"| CPU while idle (musl, 10 s; the connection watch's looks) | {idle_cpu:.1f} ms per second | (none) |")
    lines.append("\n## Notes on the misses\n")
    lines.append(
        "- **Starved connections.** tiny_http 0.12's TaskPool can queue connections that arrive in a "
        "burst behind threads already claimed (a stale `waiting_tasks` count in `TaskPool::spawn`); the "
        "server's connection watch (src/connections.rs) sees their bytes waiting unread and starts a "
        "thread for each with a connection of its own made and closed at once (the burst row above). "
        "wrk opens all its connections at "
        "once, so each run starts with such a burst; the 'connections never served' column (unread bytes "
        "and no byte received since, in every `ss -i` snapshot from 1 s in to 1 s before the end) checks "
        "that none is left: it must be 0. "
        "See tests/faults/README.md.")
    lines.append(
        "- **CPU.** wrk and the server share 2 cores, and the server's time is mostly in the kernel: "
        "tiny_http reads each request on its connection's thread and hands it to a handler thread, "
        "about 1.5 thread switches per `/get` and 2.2 per `/store` (`voluntary_ctxt_switches` of "
        "/proc/PID/task/*/status over a wrk run), where Go's goroutines switch in user space. The "
        "machine's own speed also drifts by half from one run to the next. Profile with "
        "`perf record -g -p PID` during a wrk run.")
    lines.append(
        "- **Memory.** The glibc build's RSS (idle and at 256 connections) is glibc malloc's per-thread "
        "arenas; the static musl build that ships meets both memory targets.")
    lines.append(
        "- **Side by side.** The seed's program shares the machine with wrk exactly as hello-stateful "
        "does, and for `/get` also with dnsmasq, which answers one query per seed request (its "
        "lookups are not cached) and far fewer of hello-stateful's (cached for the TTL). The pairs "
        "alternate so that a change of load on the machine during the run reaches both sides; the "
        "spread of the ratios between pairs is the noise of the comparison.")
    lines.append(
        "- **Load.** wrk runs on the same 2 cores as the server; the load average above says how busy "
        "the machine was besides.")
    lines.append("\n## Commands\n")
    lines.append("Each /store run uses a fresh server and data file, with "
                 "`RUST_LOG=info,hello_stateful::storage=trace` (one \"synced N records\" line per fsync, "
                 "counted afterwards). The POST scripts are `wrk.method = \"POST\"; wrk.body = string.rep(\"x\", N-1) .. \"\\n\"`.\n")
    lines.append("```")
    lines.extend(dict.fromkeys(cmds))
    lines.append("```\n")
    lines.append(f"- image: {img_note}")
    lines.append(f"- seed: `cd benches/seed && CGO_ENABLED=0 GOPROXY=off go build -trimpath` "
                 f"({go_version(args.seed_bin)}; GOCACHE and GOPATH under `target/go`), started with "
                 "`LISTEN_ADDR` and `DATA_FILE` set as for hello-stateful")
    lines.append("- start-up: Python `subprocess.Popen` of the binary, then `GET /healthz` on a fresh "
                 "connection in a loop until a 200 (time from just before the fork to that 200)")
    lines.append("- shutdown: `kill -TERM`, then time until `waitpid` returns; under load: wrk -t2 -c256 "
                 "-d3s on /store 64 B, signal after 1 s")
    lines.append("- RSS: VmRSS polled every 20 ms from /proc/PID/status during the runs, and VmHWM at the end")
    text = "\n".join(lines) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(text)


def fmt_ms(ms):
    return f"{ms * 1000:.0f} µs" if ms < 1 else f"{ms:.2f} ms"


def fmt_load(avg):
    return ", ".join(f"{x:.2f}" for x in avg)


def cpu_model():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
