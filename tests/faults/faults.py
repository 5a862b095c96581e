#!/usr/bin/env python3
"""Load clients, checkers and misbehaving peers for the fault suite (tests/faults/run).

Standard library only. Every load is bounded in count and time, and only talks to loopback.
Each subcommand prints one summary line per scenario and exits non-zero when an expectation
fails, so the orchestrating script only has to look at exit codes.

Record format: every body this suite stores is unique ASCII ending in "\\n" and holding no other
newline, so a data file splits into records on "\\n", and a torn record shows up as a line that
is not one of the bodies sent.
"""

import argparse
import collections
import errno
import http.client
import json
import os
import random
import re
import resource
import select
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time

HOST = "127.0.0.1"


def fail(msg):
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need and hard > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return soft


def make_body(tag, thread, n, max_pad):
    pad = random.randint(0, max_pad) if max_pad else 0
    return f"{tag}-t{thread}-n{n}-{random.getrandbits(48):012x}-".encode() + b"x" * pad + b"\n"


def request(conn, method, path, body=None):
    conn.request(method, path, body=body, headers={"Content-Type": "text/plain"})
    resp = conn.getresponse()
    return resp.status, resp.read()


# ---------------------------------------------------------------------------------------------
# load: many threads storing unique bodies; records what was acknowledged.

def cmd_load(a):
    """Stores unique bodies from `threads` keep-alive connections until `seconds` pass, `count`
    requests are sent, or the server is gone for good. With --sigterm-pid, sends SIGTERM to that
    process after --sigterm-after seconds and records which requests were fully sent before it.
    Writes one JSON line per request to --events."""
    deadline = time.monotonic() + a.seconds
    sent_count = [0]
    lock = threading.Lock()
    events = []
    sigterm_at = [None]
    stop = threading.Event()

    def worker(t):
        conn = None
        n = 0
        failures = 0
        while not stop.is_set() and time.monotonic() < deadline:
            with lock:
                if sent_count[0] >= a.count:
                    return
                sent_count[0] += 1
            n += 1
            body = make_body(a.tag, t, n, a.max_pad)
            ev = {"body": body.decode(), "sent_at": None, "status": None, "error": None}
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, a.port, timeout=a.timeout)
                    conn.connect()
                conn.putrequest("POST", "/store", skip_accept_encoding=True)
                conn.putheader("Content-Length", str(len(body)))
                conn.endheaders(body)
                ev["sent_at"] = time.monotonic()
                resp = conn.getresponse()
                resp.read()
                ev["status"] = resp.status
                failures = 0
                if resp.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                ev["error"] = f"{type(e).__name__}: {e}"
                ev["failed_at"] = time.monotonic()
                if conn is not None:
                    conn.close()
                conn = None
                failures += 1
                if failures >= a.give_up_after:
                    with lock:
                        events.append(ev)
                    return
                time.sleep(0.01)
            with lock:
                events.append(ev)

    threads = [threading.Thread(target=worker, args=(t,), daemon=True) for t in range(a.threads)]
    for th in threads:
        th.start()
    if a.sigterm_pid:
        time.sleep(a.sigterm_after)
        sigterm_at[0] = time.monotonic()
        os.kill(a.sigterm_pid, signal.SIGTERM)
    for th in threads:
        th.join(a.seconds + a.timeout + 5)
    stop.set()
    with open(a.events, "w") as f:
        if sigterm_at[0] is not None:
            f.write(json.dumps({"sigterm_at": sigterm_at[0]}) + "\n")
        for ev in events:
            f.write(json.dumps(ev) + "\n")
    acked = sum(1 for e in events if e["status"] == 200)
    print(f"  load {a.tag}: sent {len(events)}, acknowledged {acked}", flush=True)


def read_events(path):
    sigterm_at, events = None, []
    with open(path) as f:
        for line in f:
            ev = json.loads(line)
            if "sigterm_at" in ev:
                sigterm_at = ev["sigterm_at"]
            else:
                events.append(ev)
    return sigterm_at, events


def split_records(data):
    """The data file's records; a last piece without its newline is returned separately."""
    parts = data.split(b"\n")
    tail = parts.pop()  # b"" when the file ends with a newline
    return [p + b"\n" for p in parts], tail


# ---------------------------------------------------------------------------------------------
# check: acknowledged records against the data file.

def cmd_check(a):
    events = []
    for path in a.events:
        events += read_events(path)[1]
    # A request that never reached the server (connection refused while it was down) was not
    # sent; it is counted apart.
    unsent = sum(1 for e in events if e.get("sent_at") is None and e["status"] is None)
    events = [e for e in events if e.get("sent_at") is not None or e["status"] is not None]
    data = open(a.data, "rb").read()
    records, tail = split_records(data)
    sent = {e["body"].encode() for e in events}
    acked = [e["body"].encode() for e in events if e["status"] == 200]
    on_disk = {}
    for r in records:
        on_disk[r] = on_disk.get(r, 0) + 1
    # A record the server cut short when it was killed leaves no newline, so the next record
    # joins it on one line: look those up as whole byte strings in the file.
    found = sum(1 for b in acked if b in on_disk or b in data)
    missing = [b for b in acked if b not in on_disk and b not in data]
    duplicated = [r for r, c in on_disk.items() if c > 1]
    foreign = [r for r in records if r not in sent and not r.startswith(tuple(p.encode() for p in a.allow_prefix))]
    statuses = {}
    for e in events:
        key = e["status"] if e["status"] is not None else "no answer"
        statuses[key] = statuses.get(key, 0) + 1
    print(f"  {a.name}: sent {len(events)}, acknowledged {len(acked)}, found {found} "
          f"(file: {len(records)} records, {len(data)} bytes; answers {fmt_counts(statuses)}"
          + (f"; {unsent} attempts refused while the server was down" if unsent else "") + ")", flush=True)
    problems = []
    if missing:
        problems.append(f"{len(missing)} acknowledged records missing, e.g. {missing[0][:60]!r}")
    if duplicated:
        problems.append(f"{len(duplicated)} records stored twice, e.g. {duplicated[0][:60]!r}")
    if a.exact:
        unacked = [r for r in records if r in sent and r not in set(acked)]
        if unacked:
            problems.append(f"{len(unacked)} records in the file that were not acknowledged")
        if foreign or tail:
            problems.append(f"torn or foreign data: {len(foreign)} bad records, tail {tail[:60]!r}")
        if len(data) != sum(len(b) for b in acked) + sum(len(r) for r in records if r not in sent):
            problems.append("file is not the concatenation of the acknowledged bodies")
    elif (foreign or tail) and a.whole:
        # The server moves what a killed process left past its last sync aside at start.
        problems.append(f"torn records after a restart: {len(foreign)} bad records, tail {tail[:60]!r}")
    elif foreign or tail:
        # Without a restart a record cut short by the kill is still at the end of the file; it
        # was never acknowledged, so it is reported, not failed.
        print(f"  {a.name}: note: {len(foreign)} unacknowledged partial records, tail {len(tail)} bytes "
              "(written before the kill, never acknowledged)", flush=True)
    if a.min_acked and len(acked) < a.min_acked:
        errors = sorted({e["error"] for path in a.events for e in read_events(path)[1] if e.get("error")})
        problems.append(f"only {len(acked)} acknowledged (expected at least {a.min_acked}): the load did not run"
                        + (f"; its errors: {errors[:3]}" if errors else ""))
    for p in problems:
        print(f"FAIL: {a.name}: {p}", flush=True)
    sys.exit(1 if problems else 0)


def fmt_counts(d):
    return ", ".join(f"{k}: {v}" for k, v in sorted(d.items(), key=lambda kv: str(kv[0])))


# ---------------------------------------------------------------------------------------------
# sigterm: every request fully sent before the signal got an answer; 200s are in the file.

def cmd_sigterm_check(a):
    sigterm_at, events = read_events(a.events)
    if sigterm_at is None:
        fail("sigterm: the load client never sent the signal")
    before = [e for e in events if e["sent_at"] is not None and e["sent_at"] < sigterm_at - a.grace]
    # Accepted before the signal means answered and durable: anything but a 200 fails.
    unanswered = [e for e in before if e["status"] != 200]
    near = [e for e in events if e["sent_at"] is not None and sigterm_at - a.grace <= e["sent_at"] < sigterm_at]
    late = [e for e in events if e["sent_at"] is not None and e["sent_at"] >= sigterm_at]
    statuses_before, statuses_near, statuses_late = {}, {}, {}
    for group, d in ((before, statuses_before), (near, statuses_near), (late, statuses_late)):
        for e in group:
            k = e["status"] if e["status"] is not None else "no answer"
            d[k] = d.get(k, 0) + 1
    print(f"  sigterm: sent before the signal (by > {a.grace * 1000:.0f} ms) {len(before)}: {fmt_counts(statuses_before)}; "
          f"in the {a.grace * 1000:.0f} ms before it {len(near)}: {fmt_counts(statuses_near) or '-'}; "
          f"after it {len(late)}: {fmt_counts(statuses_late) or '-'}", flush=True)
    if unanswered:
        first = [e for e in unanswered if "-n1-" in e["body"] and e["sent_at"] < sigterm_at - 1]
        why = (f"; {len(first)} of them were the first request of a new connection, sent over 1 s before "
               "the signal and not handled until the shutdown: tiny_http's TaskPool queued the connection "
               "behind open keep-alive ones (see tests/faults/README.md)") if first else ""
        fail(f"sigterm: {len(unanswered)} requests sent before the signal were not stored "
             f"(answers {fmt_counts({str(e['status']): 1 for e in unanswered})}), "
             f"e.g. {unanswered[0]['error'] or unanswered[0]['body'][:24]}{why}")


# ---------------------------------------------------------------------------------------------
# disk full: unique bodies of 1 B to 64 KiB until the disk refuses; then space is freed.

def cmd_fill(a):
    """Stores from 4 threads until --refusals 507s were seen (or the count/time bound), then
    writes the events. Every answer must be 200 or 507."""
    deadline = time.monotonic() + a.seconds
    lock = threading.Lock()
    events, refused = [], [0]

    def worker(t):
        conn = http.client.HTTPConnection(HOST, a.port, timeout=10)
        n = 0
        while time.monotonic() < deadline and refused[0] < a.refusals and len(events) < a.count:
            n += 1
            body = make_body(a.tag, t, n, random.choice((0, 100, 4096, 65536)))
            ev = {"body": body.decode(), "status": None, "error": None}
            try:
                ev["status"], reply = request(conn, "POST", "/store", body)
                if ev["status"] != 200:
                    ev["reply"] = reply.decode(errors="replace").strip()
            except (OSError, http.client.HTTPException) as e:
                ev["error"] = str(e)
                conn.close()
                conn = http.client.HTTPConnection(HOST, a.port, timeout=10)
            with lock:
                events.append(ev)
                if ev["status"] == 507:
                    refused[0] += 1

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    with open(a.events, "w") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")
    bad = [e for e in events if e["status"] not in (200, 507)]
    replies = sorted({e.get("reply", "") for e in events if e["status"] == 507})
    acked = sum(1 for e in events if e["status"] == 200)
    print(f"  {a.tag}: sent {len(events)}, acknowledged {acked}, 507 {refused[0]}; 507 says {replies[:1]}", flush=True)
    if bad:
        fail(f"{a.tag}: {len(bad)} answers other than 200/507, e.g. {bad[0]}")
    if a.expect_full and refused[0] == 0:
        fail(f"{a.tag}: the disk never filled up (no 507)")
    if not a.expect_full and refused[0]:
        fail(f"{a.tag}: 507 after space was freed")


# ---------------------------------------------------------------------------------------------
# DNS that never answers, or answers garbage.

def cmd_dns(a):
    """A UDP (and TCP) DNS server on a.addr:53 that never answers (silent) or answers garbage:
    random bytes, replies with a wrong id, replies with the right id and a wrong question,
    truncated headers. Runs until killed."""
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((a.addr, 53))
    tcp = socket.socket()
    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    tcp.bind((a.addr, 53))
    tcp.listen(64)
    held = []
    print("ready", flush=True)
    n = 0
    while True:
        ready, _, _ = select.select([udp, tcp], [], [])
        try:
            if tcp in ready:
                conn, _ = tcp.accept()
                held.append(conn)  # silent on TCP too: hold it open, say nothing
                if a.mode == "garbage":
                    # A length prefix promising more than follows.
                    conn.sendall(b"\x00\x05" + os.urandom(5))
                del held[:-100]
            if udp not in ready:
                continue
            query, peer = udp.recvfrom(4096)
        except OSError:
            continue  # a resolver that hung up first: not this server's problem
        if a.mode == "silent" or len(query) < 12:
            continue
        n += 1
        qid = query[:2]
        kind = n % 5
        if kind == 0:
            reply = os.urandom(random.randint(1, 600))
        elif kind == 1:  # wrong id, otherwise a plausible header
            reply = bytes([qid[0] ^ 0xFF, qid[1]]) + b"\x81\x80" + query[4:]
        elif kind == 2:  # right id, question replaced by junk
            reply = qid + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + os.urandom(40)
        elif kind == 3:  # right id, answer count with no answers, compression loop
            reply = qid + b"\x81\x80\x00\x01\x00\x05\x00\x00\x00\x00" + query[12:] + b"\xc0\x0c" * 20
        else:  # truncated header
            reply = qid + b"\x81"
        try:
            udp.sendto(reply, peer)
        except OSError:
            pass  # the resolver gave up on this query already


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p / 100))]


def store_latencies(port, seconds, tag):
    """Sequential /store on one keep-alive connection for `seconds`: latencies in ms."""
    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    out, deadline, n = [], time.monotonic() + seconds, 0
    while time.monotonic() < deadline:
        n += 1
        t0 = time.perf_counter()
        status, _ = request(conn, "POST", "/store", make_body(tag, 0, n, 0))
        if status != 200:
            fail(f"dns: /store answered {status}")
        out.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return out


def cmd_dns_probe(a):
    """/store latency alone, then while 16 clients call /get against the broken DNS; each /get
    must be a 503 within the lookup timeout plus slack."""
    base = store_latencies(a.port, a.seconds, f"{a.name}-base")
    gets, bad = [], []
    stop = threading.Event()

    def getter():
        while not stop.is_set():
            conn = http.client.HTTPConnection(HOST, a.port, timeout=a.timeout_ms / 1000 + 10)
            t0 = time.perf_counter()
            try:
                status, body = request(conn, "GET", "/get")
            except (OSError, http.client.HTTPException) as e:
                status, body = None, str(e).encode()
            ms = (time.perf_counter() - t0) * 1000
            conn.close()
            gets.append(ms)
            if status != 503 or b"\n" != body[-1:] or body.count(b"\n") != 1:
                bad.append((status, body[:200]))

    threads = [threading.Thread(target=getter) for _ in range(16)]
    for th in threads:
        th.start()
    time.sleep(0.2)
    during = store_latencies(a.port, a.seconds, f"{a.name}-during")
    stop.set()
    for th in threads:
        th.join()
    conn = http.client.HTTPConnection(HOST, a.port, timeout=10)
    _, sample = request(conn, "GET", "/get")
    print(f"  dns {a.name}: /get {len(gets)} answers, 503 in p50 {percentile(gets, 50):.0f} ms, "
          f"max {max(gets):.0f} ms (LOOKUP_TIMEOUT_MS {a.timeout_ms}); body {sample.decode(errors='replace').strip()!r}", flush=True)
    print(f"  dns {a.name}: /store alone {len(base)} requests p50 {percentile(base, 50):.2f} ms p99 {percentile(base, 99):.2f} ms; "
          f"during /get storm {len(during)} requests p50 {percentile(during, 50):.2f} ms p99 {percentile(during, 99):.2f} ms "
          f"max {max(during):.1f} ms", flush=True)
    if bad:
        fail(f"dns {a.name}: {len(bad)} /get answers were not a one-line 503, e.g. {bad[0]}")
    if max(gets) > a.timeout_ms + a.slack_ms:
        fail(f"dns {a.name}: a /get took {max(gets):.0f} ms, over LOOKUP_TIMEOUT_MS {a.timeout_ms} + {a.slack_ms} ms slack")
    # Not a timing assertion on speed: a /store that waited for a lookup would take about the
    # lookup timeout; anything near it means the dead DNS blocked data writes.
    if max(during) >= a.timeout_ms / 2:
        fail(f"dns {a.name}: a /store took {max(during):.0f} ms while lookups hung: DNS blocks writes")


# ---------------------------------------------------------------------------------------------
# hostile clients: each case drives the server past one bound of its front, on a server of its
# own (so that its peak RSS is its own), while a steady client stores and looks up on one
# keep-alive connection, as an ingress does. The steady client is a process of its own, so the
# hostile loop cannot delay it and its latencies are the server's.

class Server:
    """What the hostile cases need to know of the server under test: its settings (the defaults
    its --help documents, then its own environment) and the budgets its start-up line names."""

    def __init__(self, port, pid, log):
        self.port, self.pid, self.log = port, pid, log
        help_text = subprocess.run([f"/proc/{pid}/exe", "--help"], capture_output=True, text=True,
                                   check=True).stdout
        settings = dict(re.findall(r"^  ([A-Z_]+) .*\(default ([^)]*)\)$", help_text, re.M))
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().decode(errors="replace").split("\0"):
                name, _, value = item.partition("=")
                if name in settings:
                    settings[name] = value
        self.max_body = int(settings["MAX_BODY_BYTES"])
        self.head_timeout = int(settings["HEAD_TIMEOUT_MS"]) / 1000
        self.body_timeout = int(settings["BODY_TIMEOUT_MS"]) / 1000
        m = re.search(r"budgets for a memory limit of (\d+) bytes: (\d+) connections, (\d+) bytes of request bodies",
                      self.log_text())
        if not m:
            fail("hostile: the server's start-up line names no budgets")
        self.memory_limit, self.connections, self.body_bytes = map(int, m.groups())
        # What the server's budgets aim to stay under (src/budgets.rs): 3/4 of the limit.
        self.target_kib = self.memory_limit // 4 * 3 // 1024
        self.own_files = self.files()

    def log_text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def status(self, field):
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        return 0

    def files(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def alive(self):
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().split(") ")[1][0] not in "ZX"
        except OSError:
            return False


class Sampler(threading.Thread):
    """The server's threads and descriptors, at most, sampled every 50 ms."""

    def __init__(self, server):
        super().__init__(daemon=True)
        self.server, self.threads, self.files, self.stop = server, 0, 0, threading.Event()

    def run(self):
        while not self.stop.is_set():
            try:
                self.threads = max(self.threads, self.server.status("Threads"))
                self.files = max(self.files, self.server.files())
            except OSError:
                return
            self.stop.wait(0.05)


class Client:
    """One hostile connection, driven without blocking by `drive`: it connects, sends its `plan`
    (byte strings, in order), reads what comes back while `reads`, and notes how it ended."""

    def __init__(self, plan=(), reads=True):
        self.plan = collections.deque(memoryview(p) for p in plan)
        self.reads = reads
        self.got = bytearray()
        self.sent = 0
        # "connecting", "open", then "closed" (the server's end of file), "reset" (a send or
        # read refused: the server closed it) or "failed" (never connected: the reason).
        self.state = "connecting"
        self.why = None
        self.started_at = self.opened_at = self.ended_at = None
        self.sock, self.registered = None, 0

    def start(self, sel, port):
        self.sock = socket.socket()
        self.sock.setblocking(False)
        self.started_at = time.monotonic()
        err = self.sock.connect_ex((HOST, port))
        if err not in (0, errno.EINPROGRESS):
            self.end(sel, "failed", os.strerror(err))
            return
        self.registered = selectors.EVENT_WRITE
        sel.register(self.sock, self.registered, self)

    @property
    def ended(self):
        return self.state in ("closed", "reset", "failed")

    def update(self, sel):
        if self.state != "open":
            return
        want = (selectors.EVENT_READ if self.reads else 0) | (selectors.EVENT_WRITE if self.plan else 0)
        if want == self.registered:
            return
        if not want:
            sel.unregister(self.sock)
        elif self.registered:
            sel.modify(self.sock, want, self)
        else:
            sel.register(self.sock, want, self)
        self.registered = want

    def on_event(self, sel, mask):
        if self.state == "connecting":
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                return self.end(sel, "failed", os.strerror(err))
            self.state, self.opened_at = "open", time.monotonic()
            # Seen late (the loop had many events), a connection may have been closed already
            # (CLOSE_WAIT): then nothing is sent, and it is counted as closed by the server.
            if self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != TCP_ESTABLISHED:
                self.plan.clear()
        try:
            if mask & selectors.EVENT_READ:
                data = self.sock.recv(65536)
                if not data:
                    return self.end(sel, "closed")
                self.got += data
            if self.plan:
                n = self.sock.send(self.plan[0][:262144])
                self.sent += n
                self.plan[0] = self.plan[0][n:]
                if not self.plan[0]:
                    self.plan.popleft()
        except BlockingIOError:
            pass
        except OSError as e:
            return self.end(sel, "reset", e.strerror)
        self.update(sel)

    def end(self, sel, state, why=None):
        """Notes how the connection ended, keeps what the server sent before (a reset leaves
        what had arrived readable) and frees the descriptor."""
        if self.registered:
            sel.unregister(self.sock)
            self.registered = 0
        if state != "failed":
            while True:
                try:
                    data = self.sock.recv(65536)
                except OSError:
                    break
                if not data:
                    break
                self.got += data
        self.state, self.why, self.ended_at = state, why, time.monotonic()
        self.sock.close()

    def abandon(self, sel):
        """Closes a connection the case is done with (still connecting: held back)."""
        if self.registered:
            sel.unregister(self.sock)
            self.registered = 0
        if self.sock:
            self.sock.close()


def abandon_open(clients, sel):
    """Closes the clients still connecting or open: the case is done with them."""
    for c in clients:
        if not c.ended:
            c.abandon(sel)


def drive(server, clients, seconds, until=None, every=None, tick=None, sel=None):
    """Connects the clients not yet started, and moves bytes, until `until()` holds or `seconds`
    pass; `tick()` runs every `every` seconds and may give clients more to send."""
    sel = sel or selectors.DefaultSelector()
    # Connections are started a few hundred at a time between looks at the ones made, so that
    # each one's first bytes go out as soon as it is made: starting thousands takes seconds, and
    # a connection silent that long is rightly closed as idle.
    unstarted = collections.deque(c for c in clients if c.sock is None)
    now = time.monotonic()
    deadline, next_tick, next_look = now + seconds, now + (every or 0), now
    while now < deadline:
        for _ in range(min(256, len(unstarted))):
            unstarted.popleft().start(sel, server.port)
        # `until` may look at every client: not more often than 20 times a second.
        if until and now >= next_look:
            if until():
                break
            next_look = now + 0.05
        for key, mask in sel.select(timeout=0.02):
            key.data.on_event(sel, mask)
        now = time.monotonic()
        if tick and now >= next_tick:
            tick()
            for c in clients:
                c.update(sel)
            next_tick = now + every
    return sel


def answers(data):
    """The HTTP answers at the start of `data`, in order, as (status, headers, body), and the
    bytes after the last whole one. `data` is all a connection received: an answer without a
    Content-Length (the 413 of a parked connection) ends where the connection did."""
    out = []
    data = bytes(data)
    while data.startswith(b"HTTP/1."):
        end = data.find(b"\r\n\r\n")
        if end < 0:
            break
        lines = data[:end].decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", len(data) - end - 4))
        if len(data) < end + 4 + length:
            break
        out.append((int(lines[0].split(" ")[1]), headers, data[end + 4:end + 4 + length]))
        data = data[end + 4 + length:]
    return out, data


def one_answer(c):
    """(status, headers, body) of a client that got exactly one whole answer, or None."""
    got, rest = answers(c.got)
    return got[0] if len(got) == 1 and not rest else None


def seconds_open(cs):
    """p50 and max of how long the clients stayed connected, in seconds."""
    times = [c.ended_at - (c.opened_at or c.started_at) for c in cs if c.ended_at]
    return percentile(times, 50), max(times, default=float("nan"))


TCP_ESTABLISHED = 1  # tcp_info.tcpi_state
GET_HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


def case_uploads(server, count):
    """Uploads that send the headers of a 1 MiB /store and 1,000,000 of its bytes, then stall.
    Those past the body budget get 503 with Retry-After at once and are closed; those within
    it get 408 after BODY_TIMEOUT_MS and are closed."""
    length = 1 << 20
    head = b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length
    body = b"u" * 1_000_000
    clients = [Client([head, body]) for _ in range(count)]
    drive(server, clients, server.body_timeout + 15, until=lambda: all(c.ended for c in clients))
    refused, late, other = [], [], []
    busy_text = f"budget of {server.body_bytes} bytes; retry later\n".encode()
    late_text = f"request body did not arrive within {server.body_timeout * 1000:.0f} ms\n".encode()
    for c in clients:
        a = one_answer(c)
        if a and c.ended and a[0] == 503 and a[1].get("retry-after") == "1" and a[2].endswith(busy_text):
            refused.append(c)
        elif a and c.ended and a[0] == 408 and a[2].endswith(late_text):
            late.append(c)
        else:
            other.append(c)
    readers = min(count, server.body_bytes // length)
    lines = [f"{count} uploads of 1,000,000 of {length} bytes, then silence: {len(refused)} got 503 with "
             f"Retry-After and were closed (within {seconds_open(refused)[1] * 1000:.0f} ms), {len(late)} were read "
             f"(the body budget holds {readers}) and got 408 and were closed after {seconds_open(late)[0]:.1f} s "
             f"(BODY_TIMEOUT_MS {server.body_timeout * 1000:.0f})"]
    problems = []
    if other:
        c = other[0]
        problems.append(f"{len(other)} uploads got another answer or none, e.g. {c.state}: {bytes(c.got[:160])!r}")
    if len(late) != readers:
        problems.append(f"{len(late)} uploads were read, not the {readers} the body budget holds")
    return lines, problems


def case_pipelining(server, count):
    """One connection sends `count` GET /healthz without reading an answer: it is closed past
    the bound on pipelined requests (or the send timeout), with the answers sent so far."""
    c = Client([GET_HEALTHZ * count], reads=False)
    sel = drive(server, [c], 60, until=lambda: c.ended or not c.plan)
    sent_all = not c.plan
    if not c.ended:
        # Everything was taken: now read, to see how many answers come before the close.
        c.reads = True
        c.update(sel)
        drive(server, [c], 30, until=lambda: c.ended, sel=sel)
    got, rest = answers(c.got)
    statuses = {}
    for a in got:
        statuses[a[0]] = statuses.get(a[0], 0) + 1
    log = server.log_text()
    bound = ("the pipelining bound" if "budget pipelined requests" in log
             else "the send timeout" if "sending the answer" in log else "no budget named in the log")
    lines = [f"1 connection, {count} pipelined GET /healthz unread: {c.sent} bytes taken "
             f"({'all' if sent_all else 'not all'} of {len(GET_HEALTHZ) * count}); "
             f"{c.state if c.ended else 'still open'} after {len(got)} answers ({fmt_counts(statuses) or 'none'}); "
             f"closed by {bound}"]
    problems = []
    if not c.ended:
        problems.append("the connection was never closed")
    if len(got) >= count:
        problems.append(f"all {len(got)} pipelined requests were answered")
    if set(statuses) - {200} or rest:
        problems.append(f"answers other than 200: {fmt_counts(statuses)}, then {bytes(rest[:80])!r}")
    return lines, problems


def case_idle(server, count):
    """`count` keep-alive connections (every other one sends one GET /healthz, reads its answer
    and stays), as many as this process may open. At the connection budget the server closes
    the idlest, and past an eighth over it new connections wait in the kernel."""
    limit = raise_fd_limit(count + 200)
    n = min(count, limit - 200)
    window = 10
    clients = [Client([GET_HEALTHZ] if i % 2 else []) for i in range(n)]

    def settled():
        # Every connection made or given up, and every request sent answered (or closed).
        return not any(c.state == "connecting" or c.state == "open" and (c.plan or c.sent and not c.got)
                       for c in clients)

    sel = drive(server, clients, window, until=settled)
    held = [c for c in clients if c.state == "connecting"]
    abandon_open(held, sel)
    # The server settles within the budget once no new connection arrives.
    deadline = time.monotonic() + 5
    while (server.files() - server.own_files) // 2 > server.connections and time.monotonic() < deadline:
        drive(server, clients, 0.1, sel=sel)
    files = server.files()
    opened = [c for c in clients if c.opened_at is not None]
    asked = [c for c in opened if c.sent]
    ok = [c for c in asked if (a := answers(c.got)[0]) and len(a) == 1 and a[0][0] == 200]
    bad = [c for c in asked if c not in ok]
    closed = [c for c in opened if c.ended]
    lines = [f"{count} idle keep-alive connections asked" + (f", {n} tried (the open-file limit is {limit})" if n < count else "")
             + f": {len(opened)} made, {len(held)} held back (no handshake within {window} s); "
             f"{len(closed)} of those made closed by the server, {len(opened) - len(closed)} still open; "
             f"{len(ok)} of {len(asked)} requests answered 200; the server holds {(files - server.own_files) // 2} "
             f"connections at the end (budget {server.connections})"]
    problems = []
    if bad:
        c = bad[0]
        after = percentile([c.ended_at - c.opened_at for c in bad if c.ended_at], 50)
        problems.append(f"{len(bad)} requests on open connections got no 200 (their connections closed p50 {after:.1f} s "
                        f"after the request was sent), e.g. {c.state}: {bytes(c.got[:120])!r}")
    if (files - server.own_files) // 2 > server.connections:
        problems.append(f"{(files - server.own_files) // 2} connections still open on the server, over the budget of {server.connections}")
    failed = {}
    for c in clients:
        if c.state == "failed":
            failed[c.why] = failed.get(c.why, 0) + 1
    if any("refused" in why for why in failed):
        problems.append(f"connections refused: {fmt_counts(failed)}")
    elif failed:
        lines.append(f"not connected for want of local resources: {fmt_counts(failed)}")
    abandon_open(opened, sel)
    return lines, problems


def case_huge_head(server, count):
    """One request head with a header line of 64 MiB: closed once the head is over 64 KiB."""
    chunk = b"x" * 65536
    total = 64 << 20
    c = Client([b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "] + [chunk] * (total // len(chunk)))
    drive(server, [c], 60, until=lambda: c.ended)
    lines = [f"a 64 MiB header line: {c.sent} bytes taken, then {c.state if c.ended else 'still open'}"
             + (f" ({c.why})" if c.why else "") + f"; answer {bytes(c.got[:40])!r}"]
    problems = []
    if not c.ended or not c.plan:
        problems.append("the whole 64 MiB head was taken" if not c.plan else "the connection was never closed")
    if c.got:
        problems.append(f"an answer came for a head that was never finished: {bytes(c.got[:80])!r}")
    return lines, problems


def case_huge_lengths(server, count):
    """`count` uploads declaring lengths over MAX_BODY_BYTES, from 2^64-1 down to 2 MB: each
    gets 413 and is closed (those no drain could allocate are parked)."""
    lengths = [2 ** 64 - 1, 10 ** 15, 20_000_000, 2_000_000]
    clients = [Client([b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\nabc" % lengths[i % 4]])
               for i in range(count)]
    drive(server, clients, 20, until=lambda: all(c.ended for c in clients))
    text = f"over the limit of {server.max_body} bytes\n".encode()
    good = {n: 0 for n in lengths}
    other, parked = [], 0
    for i, c in enumerate(clients):
        a = one_answer(c)
        if c.ended and a and a[0] == 413 and a[2].endswith(text):
            good[lengths[i % 4]] += 1
            # A parked connection's answer is written by tiny_http's `Request::upgrade`.
            parked += a[1].get("upgrade") == "hello-stateful"
        else:
            other.append(c)
    lines = [f"{count} declared lengths over {server.max_body}: "
             + ", ".join(f"{n}: {k} of {count // 4 + (i < count % 4)} got 413 and were closed" for i, (n, k) in enumerate(good.items()))
             + (f"; {parked} connections parked (at most {server.connections // 4})" if parked else "; none parked")]
    problems = []
    if other:
        c = other[0]
        problems.append(f"{len(other)} got another answer or none, e.g. {c.state}: {bytes(c.got[:160])!r}")
    return lines, problems


def case_slowloris(server, count):
    """`count` connections trickling a request head, a byte a second: each is closed after
    HEAD_TIMEOUT_MS with no answer; past the connection budget new ones wait in the kernel."""
    line = b"X-Slow: 1\r\n"
    clients = [Client([b"GET /healthz HTTP/1.1\r\nHost: x\r\n"]) for _ in range(count)]
    trickled = {}

    def tick():
        for c in clients:
            if c.state == "open" and not c.plan:
                i = trickled.get(c, 0)
                c.plan.append(memoryview(line[i % len(line):i % len(line) + 1]))
                trickled[c] = i + 1

    window = server.head_timeout + 2
    sel = drive(server, clients, window, every=1, tick=tick,
                until=lambda: all(c.ended for c in clients))
    held = [c for c in clients if c.state == "connecting"]
    abandon_open(held, sel)
    drive(server, clients, server.head_timeout + 10, every=1, tick=tick, sel=sel,
          until=lambda: all(c.ended or c.state == "connecting" for c in clients))
    opened = [c for c in clients if c.opened_at is not None]
    closed = [c for c in opened if c.ended]
    answered = [c for c in opened if c.got]
    p50, slowest = seconds_open(closed)
    lines = [f"{count} heads trickled a byte a second: {len(opened)} made, {len(held)} held back "
             f"(no handshake within {window:.0f} s); {len(closed)} closed by the server with {len(answered)} answers, after p50 "
             f"{p50:.1f} s, at most {slowest:.1f} s (HEAD_TIMEOUT_MS {server.head_timeout * 1000:.0f})"]
    problems = []
    if len(closed) < len(opened):
        problems.append(f"{len(opened) - len(closed)} trickling heads were never cut off")
    if answered:
        problems.append(f"{len(answered)} unfinished heads got an answer, e.g. {bytes(answered[0].got[:80])!r}")
    abandon_open(opened, sel)
    return lines, problems


# Requests whose framing cannot be trusted, each followed by a request that a server reading
# the first one wrongly would take as the next: the answer must be one 400, then the connection
# closed, and nothing stored. The last ones tiny_http refuses itself (a request line or header
# it cannot parse); it may also close without a word (bytes that are not text).
SMUGGLED = b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nsmuggled\n"
BAD_FRAMING = [
    b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
    b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
    b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 6\r\n\r\nhello",
    b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhelloXX",
    b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length : 5\r\n\r\nhello",
    b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616\r\n\r\n",
    b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /store HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    b"POST /store HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    b"POST /store HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
    b"POST /store HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    b"GARBAGE\r\n\r\n",
    b"GET /healthz HTTP/9.9\r\n\r\n",
    b"GET /healthz\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n",
    b"\r\n\r\n\r\n",
]
UNREADABLE = b"\x00\x01\x02\xff\xfe\r\n\r\n"


def case_smuggling(server, rounds):
    """Each request of BAD_FRAMING and UNREADABLE, followed by a second request, `rounds` times,
    all at once; the answers on the wire are counted."""
    kinds = BAD_FRAMING + [UNREADABLE]
    clients = [(raw, Client([raw + SMUGGLED])) for _ in range(rounds) for raw in kinds]
    drive(server, [c for _, c in clients], 10, until=lambda: all(c.ended for _, c in clients))
    counts, bad = {}, []
    for raw, c in clients:
        got, rest = answers(c.got)
        key = f"{len(got)} answer{'s' * (len(got) != 1)}" + (f" ({got[0][0]})" if len(got) == 1 else "")
        key += ", closed" if c.ended else ", left open"
        counts[key] = counts.get(key, 0) + 1
        if not c.ended or rest or [a[0] for a in got] not in ([400], [] if raw == UNREADABLE else [400]):
            bad.append((raw[:70], c.state, bytes(c.got[:200])))
    lines = [f"{len(clients)} badly framed requests each followed by a second one ({len(kinds)} kinds x {rounds}, "
             f"at once): {fmt_counts(counts)}"]
    problems = [f"{len(bad)} did not get exactly one 400 and a close, e.g. {bad[0]}"] if bad else []
    return lines, problems


HOSTILE_CASES = {
    "uploads": (case_uploads, 70),
    "pipelining": (case_pipelining, 60000),
    "idle": (case_idle, 2000),
    "huge-head": (case_huge_head, 1),
    "huge-lengths": (case_huge_lengths, 200),
    "slowloris": (case_slowloris, 1000),
    "smuggling": (case_smuggling, 20),
}


def cmd_hostile(a):
    """One hostile case (name, or name-count: idle-20000) against the server at --pid, with the
    steady client running throughout; prints the server's peak RSS against its target, the
    steady client's numbers and what the hostile clients got, and appends a row to --summary."""
    m = re.fullmatch(r"(.*?)(?:-(\d+))?", a.case)
    if m[1] not in HOSTILE_CASES:
        fail(f"hostile: unknown case {a.case} (known: {', '.join(HOSTILE_CASES)})")
    run_case, count = HOSTILE_CASES[m[1]]
    count = int(m[2] or count)
    server = Server(a.port, a.pid, a.log)
    sampler = Sampler(server)
    sampler.start()
    steady = subprocess.Popen([sys.executable, __file__, "steady", "--port", str(a.port), "--tag", f"steady-{a.case}",
                               "--events", a.events], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if not select.select([steady.stdout], [], [], 15)[0] or steady.stdout.readline().strip() != "ready":
        steady.kill()
        fail(f"{a.case}: the steady client did not start")
    started = time.monotonic()
    lines, problems = run_case(server, count)
    took = time.monotonic() - started
    # A few more rounds of the steady client after the attack, then its numbers.
    time.sleep(0.5)
    steady.stdin.close()
    s = json.loads(steady.stdout.readline() or "{}")
    steady.wait(10)
    sampler.stop.set()
    sampler.join()
    alive = server.alive()
    peak = server.status("VmHWM") if alive else 0
    name = a.case
    print(f"  {name}: peak RSS {peak / 1024:.1f} MiB (VmHWM {peak} KiB) against a target of {server.target_kib / 1024:.1f} MiB "
          f"(3/4 of MEMORY_LIMIT {server.memory_limit}); at most {sampler.threads} threads and {sampler.files} descriptors "
          f"(about {max(0, sampler.files - server.own_files) // 2} connections; budget {server.connections})",
          flush=True)
    print(f"  {name}: steady client (one keep-alive connection, /store and /get every 20 ms): {s.get('requests', 0)} requests, "
          f"{s.get('errors', '?')} errors; latency p50 {s.get('p50', float('nan')):.1f} ms, p99 {s.get('p99', float('nan')):.1f} ms, "
          f"max {s.get('max', float('nan')):.0f} ms", flush=True)
    if s.get("over_1s"):
        # Printed, not failed (timings are not asserted here): the front promises other clients'
        # small requests an answer within a second whatever hostile clients do.
        print(f"  {name}: note: {s['over_1s']} steady requests took over 1 s", flush=True)
    for line in lines:
        print(f"  {name}: {line}", flush=True)
    log = server.log_text()
    began = re.findall(r"budget ([a-z ]+): .*; turning clients away until it recovers", log)
    refused = {}
    for budget, n in re.findall(r"budget ([a-z ]+): recovered after (\d+) refusals", log):
        refused[budget] = refused.get(budget, 0) + int(n)
    named = ", ".join(f"{b} ({began.count(b)} shortage{'s' * (began.count(b) != 1)}, {refused.get(b, '?')} turned away)"
                      for b in sorted(set(began)))
    print(f"  {name}: server log: {log.count('WARN ')} warnings, {log.count('ERROR ')} errors; "
          f"budgets named: {named or 'none'}", flush=True)
    if not alive:
        problems.append("the server is gone")
    elif peak >= server.target_kib:
        problems.append(f"peak RSS {peak} KiB is at or above the target of {server.target_kib} KiB")
    if s.get("errors", 1):
        problems.append(f"the steady client got {s.get('errors', 'unknown')} errors, e.g. {s.get('first_errors')}")
    with open(a.summary, "a") as f:
        f.write(f"| {name} | {peak / 1024:.1f} MiB | {server.target_kib / 1024:.0f} MiB | {s.get('requests', 0)} | "
                f"{s.get('p50', float('nan')):.1f} / {s.get('p99', float('nan')):.1f} / {s.get('max', float('nan')):.0f} ms | "
                f"{took:.0f} s | {'FAILED' if problems else 'ok'} |\n")
    for p in problems:
        print(f"FAIL: {name}: {p}", flush=True)
    sys.exit(1 if problems else 0)


def cmd_steady(a):
    """Stores a small unique record and asks for /get every --period-ms on one keep-alive
    connection (a new one after an error) until its standard input closes. Prints "ready" after
    the first round, and at the end a JSON summary; writes the /store events for `check`."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    conn, events, latencies, errors, n = None, [], [], [], 0
    while not stop.is_set():
        round_started = time.monotonic()
        n += 1
        for method, path in (("POST", "/store"), ("GET", "/get")):
            body = make_body(a.tag, 0, n, 0) if method == "POST" else None
            ev = {"body": body.decode() if body else None, "sent_at": None, "status": None, "error": None}
            t0 = time.perf_counter()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(HOST, a.port, timeout=a.timeout)
                    conn.connect()
                ev["sent_at"] = time.monotonic()
                ev["status"], reply = request(conn, method, path, body)
                if ev["status"] != 200:
                    ev["error"] = f"{ev['status']} {reply[:100].decode(errors='replace')}"
            except (OSError, http.client.HTTPException) as e:
                ev["error"] = f"{type(e).__name__}: {e}"
                if conn is not None:
                    conn.close()
                conn = None
            latencies.append((time.perf_counter() - t0) * 1000)
            if ev["error"]:
                errors.append(f"{method} {path}: {ev['error']}")
            if body:
                events.append(ev)
        if n == 1:
            print("ready", flush=True)
        stop.wait(max(0.0, a.period_ms / 1000 - (time.monotonic() - round_started)))
    with open(a.events, "w") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")
    print(json.dumps({"requests": len(latencies), "errors": len(errors), "first_errors": errors[:3],
                      "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                      "max": max(latencies), "over_1s": sum(1 for ms in latencies if ms > 1000)}), flush=True)


# ---------------------------------------------------------------------------------------------
# small helpers for the volume scenario

def cmd_store(a):
    """Stores --count unique bodies sequentially; every answer must be --expect."""
    conn = http.client.HTTPConnection(HOST, a.port, timeout=10)
    events, replies = [], set()
    for n in range(a.count):
        body = make_body(a.tag, 0, n, 0)
        status, reply = request(conn, "POST", "/store", body)
        events.append({"body": body.decode(), "status": status, "sent_at": None, "error": None})
        if status != 200:
            replies.add(f"{status} {reply.decode(errors='replace').strip()}")
    with open(a.events, "w") as f:
        for ev in events:
            f.write(json.dumps(ev) + "\n")
    statuses = {e["status"] for e in events}
    print(f"  {a.tag}: sent {len(events)}, acknowledged {sum(e['status'] == 200 for e in events)}; "
          f"answers {sorted(statuses)} {sorted(replies)[:2]}", flush=True)
    if statuses != {a.expect}:
        fail(f"{a.tag}: expected every answer to be {a.expect}, got {sorted(statuses)}")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("load")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--threads", type=int, default=16)
    p.add_argument("--seconds", type=float, default=3)
    p.add_argument("--count", type=int, default=100000)
    p.add_argument("--max-pad", type=int, default=3000)
    p.add_argument("--timeout", type=float, default=5)
    p.add_argument("--give-up-after", type=int, default=20)
    p.add_argument("--sigterm-pid", type=int)
    p.add_argument("--sigterm-after", type=float, default=1.0)
    p.add_argument("--events", required=True)
    p.set_defaults(fn=cmd_load)
    p = sub.add_parser("check")
    p.add_argument("--name", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--events", nargs="+", required=True)
    p.add_argument("--exact", action="store_true")
    p.add_argument("--whole", action="store_true", help="no torn record anywhere in the file")
    p.add_argument("--min-acked", type=int, default=1)
    p.add_argument("--allow-prefix", nargs="*", default=[])
    p.set_defaults(fn=cmd_check)
    p = sub.add_parser("sigterm-check")
    p.add_argument("--events", required=True)
    p.add_argument("--grace", type=float, default=0.1)
    p.set_defaults(fn=cmd_sigterm_check)
    p = sub.add_parser("fill")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--count", type=int, default=5000)
    p.add_argument("--refusals", type=int, default=50)
    p.add_argument("--expect-full", action="store_true")
    p.add_argument("--events", required=True)
    p.set_defaults(fn=cmd_fill)
    p = sub.add_parser("dns")
    p.add_argument("--addr", required=True)
    p.add_argument("--mode", choices=("silent", "garbage"), required=True)
    p.set_defaults(fn=cmd_dns)
    p = sub.add_parser("dns-probe")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--seconds", type=float, default=2)
    p.add_argument("--timeout-ms", type=int, required=True)
    p.add_argument("--slack-ms", type=int, default=1000)
    p.set_defaults(fn=cmd_dns_probe)
    p = sub.add_parser("hostile")
    p.add_argument("--case", required=True, help="a name of HOSTILE_CASES, or name-count: idle-20000")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True, help="the server's process")
    p.add_argument("--log", required=True, help="the server's log (for the budgets it names)")
    p.add_argument("--events", required=True, help="the steady client's /store events, for check")
    p.add_argument("--summary", required=True, help="a file to append the table row to")
    p.set_defaults(fn=cmd_hostile)
    p = sub.add_parser("steady")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--period-ms", type=int, default=20)
    p.add_argument("--timeout", type=float, default=10)
    p.add_argument("--events", required=True)
    p.set_defaults(fn=cmd_steady)
    p = sub.add_parser("store")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--count", type=int, default=20)
    p.add_argument("--expect", type=int, default=200)
    p.add_argument("--events", required=True)
    p.set_defaults(fn=cmd_store)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
