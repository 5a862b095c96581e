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
import http.client
import json
import os
import random
import resource
import select
import signal
import socket
import statistics
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
# hostile clients at scale, with a steady client that must keep succeeding.

HUGE_LENGTHS = ["1000000000000000", "18446744073709551615", "9223372036854775807", "4294967296",
                "17179869184"]
# (raw request, whether a 200 is acceptable): every one of these must leave the server up and store nothing.
MALFORMED = [
    (b"GARBAGE\r\n\r\n", False),
    (b"\x00\x01\x02\xff\xfe\r\n\r\n", False),
    (b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\nGET /store HTTP/1.1\r\n\r\n", False),
    (b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhelloXX", False),
    (b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", False),
    (b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", False),
    (b"POST /store HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", False),
    (b"POST /store HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", False),
    (b"GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n", False),
    (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", False),
    (b"GET /healthz HTTP/1.1\r\nX: " + b"b" * 70000 + b"\r\n\r\n", True),  # only large: a 200 is fine
    (b"GET /healthz HTTP/9.9\r\n\r\n", False),
    (b"GET /healthz\r\n\r\n", False),
    (b"\r\n\r\n\r\n", False),
]


def cmd_hostile(a):
    limit = raise_fd_limit(a.slow + a.idle + a.huge + 500)
    if limit < a.slow + a.idle + a.huge + 200:
        fail(f"hostile: open file limit {limit} is too low for {a.slow + a.idle + a.huge} connections")
    stop = threading.Event()
    steady = {"store_ok": 0, "get_ok": 0, "bad": [], "lat": [], "acked": []}

    def steady_client():
        n = 0
        while not stop.is_set():
            n += 1
            for method, path in (("POST", "/store"), ("GET", "/get")):
                body = make_body("steady", 0, n, 0) if path == "/store" else None
                conn = http.client.HTTPConnection(HOST, a.port, timeout=5)
                t0 = time.perf_counter()
                try:
                    status, reply = request(conn, method, path, body)
                except (OSError, http.client.HTTPException) as e:
                    status, reply = None, str(e).encode()
                steady["lat"].append((time.perf_counter() - t0) * 1000)
                conn.close()
                if status == 200:
                    steady["store_ok" if path == "/store" else "get_ok"] += 1
                    if body:
                        steady["acked"].append(body.decode())
                else:
                    steady["bad"].append((path, status, reply[:120]))
            time.sleep(0.02)

    st = threading.Thread(target=steady_client)
    st.start()
    socks = []

    def connect():
        s = socket.socket()
        s.settimeout(10)
        s.connect((HOST, a.port))
        socks.append(s)
        return s

    t0 = time.monotonic()
    counts = {}
    try:
        # 1,000 slow uploads: headers promise 100 KB, a few bytes arrive, then a byte now and
        # then (half of them) or nothing at all (the other half).
        slow = []
        for i in range(a.slow):
            s = connect()
            s.sendall(b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nslow-" + str(i).encode())
            slow.append(s)
        # 2,000 idle connections: half never send a byte, half send one request and stay.
        idle_answered = 0
        for i in range(a.idle):
            s = connect()
            if i % 2:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        for i, s in enumerate(socks[a.slow:]):
            if i % 2:
                if s.recv(4096).startswith(b"HTTP/1.1 200"):
                    idle_answered += 1
        counts["idle answered"] = idle_answered
        # A burst of huge declared lengths: each must get a 413.
        huge = []
        for i in range(a.huge):
            s = connect()
            s.sendall(b"POST /store HTTP/1.1\r\nHost: x\r\nContent-Length: "
                      + HUGE_LENGTHS[i % len(HUGE_LENGTHS)].encode() + b"\r\n\r\nhuge")
            huge.append(s)
        got413 = 0
        for s in huge:
            try:
                if s.recv(4096).startswith(b"HTTP/1.1 413"):
                    got413 += 1
            except OSError:
                pass
        counts["huge 413"] = got413
        # Malformed requests, each on its own connection: an error status or a closed
        # connection is fine; a 200 to a request that smuggles a second one is not.
        malformed_answers, malformed_accepted = {}, []
        for _ in range(a.malformed_rounds):
            for raw, may_succeed in MALFORMED:
                s = socket.socket()
                s.settimeout(3)
                s.connect((HOST, a.port))
                try:
                    s.sendall(raw)
                    s.shutdown(socket.SHUT_WR)
                    reply = s.recv(65536)
                    key = reply[:12].decode(errors="replace") or "closed"
                except OSError as e:
                    key = type(e).__name__
                finally:
                    s.close()
                malformed_answers[key] = malformed_answers.get(key, 0) + 1
                if key.startswith("HTTP/1.1 2") and not may_succeed:
                    malformed_accepted.append(raw[:60])
        counts["malformed answers"] = malformed_answers
        # Keep everything open for a while, trickling bytes into half the slow uploads.
        hold_until = time.monotonic() + a.hold
        while time.monotonic() < hold_until:
            for s in slow[::2]:
                try:
                    s.send(b"z")
                except OSError:
                    pass
            time.sleep(0.5)
        server_alive = True
        try:
            c = http.client.HTTPConnection(HOST, a.port, timeout=5)
            server_alive = request(c, "GET", "/healthz")[0] == 200
        except OSError:
            server_alive = False
    finally:
        stop.set()
        st.join()
        for s in socks:
            s.close()
    elapsed = time.monotonic() - t0
    with open(a.events, "w") as f:
        for body in steady["acked"]:
            f.write(json.dumps({"body": body, "status": 200, "sent_at": None, "error": None}) + "\n")
    lat = steady["lat"]
    print(f"  hostile: {a.slow} slow uploads, {a.idle} idle connections ({counts['idle answered']} of "
          f"{a.idle // 2} keep-alive requests answered), {a.huge} huge Content-Lengths ({counts['huge 413']} got 413), "
          f"{a.malformed_rounds * len(MALFORMED)} malformed: {fmt_counts(counts['malformed answers'])}", flush=True)
    print(f"  hostile: steady client over {elapsed:.1f} s: /store 200 {steady['store_ok']}, /get 200 {steady['get_ok']}, "
          f"failed {len(steady['bad'])}; latency p50 {percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms, "
          f"max {max(lat):.0f} ms", flush=True)
    slow_steady = sum(1 for ms in lat if ms > 1000)
    if slow_steady:
        # Printed, not failed (timings are not asserted): DESIGN.md section 7 wants no client
        # delayed by more than a second by others.
        print(f"  hostile: note: {slow_steady} steady requests took over 1 s", flush=True)
    problems = []
    if steady["bad"]:
        problems.append(f"steady client failed {len(steady['bad'])} times, e.g. {steady['bad'][0]} "
                        "(each steady request uses a new connection: one that waits 5 s was queued "
                        "behind open connections by tiny_http's TaskPool, see tests/faults/README.md)")
    if steady["store_ok"] < 10 or steady["get_ok"] < 10:
        problems.append("steady client made too few requests")
    if counts["huge 413"] != a.huge:
        problems.append(f"{a.huge - counts['huge 413']} huge Content-Lengths got no 413")
    if counts["idle answered"] != a.idle // 2:
        problems.append("idle keep-alive connections went unanswered")
    if malformed_accepted:
        problems.append(f"malformed requests were answered 2xx: {malformed_accepted[:2]}")
    if not server_alive:
        problems.append("server not answering /healthz after the attack")
    for p in problems:
        print(f"FAIL: hostile: {p}", flush=True)
    sys.exit(1 if problems else 0)


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
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--slow", type=int, default=1000)
    p.add_argument("--idle", type=int, default=2000)
    p.add_argument("--huge", type=int, default=200)
    p.add_argument("--malformed-rounds", type=int, default=5)
    p.add_argument("--hold", type=float, default=5)
    p.add_argument("--events", required=True)
    p.set_defaults(fn=cmd_hostile)
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
