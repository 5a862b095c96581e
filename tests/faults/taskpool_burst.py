#!/usr/bin/env python3
# Reproduction, not part of the suite: python3 tests/faults/taskpool_burst.py PORT SERVER_PID N
# tiny_http 0.12's TaskPool can queue a new connection behind busy keep-alive connections; the
# server's connection watch probes for each one it finds queued (see tests/faults/README.md for
# what this prints with and without the probes). The server is paused (SIGSTOP) while N clients
# connect and send one GET /healthz each, so its accept thread then takes them in one burst;
# every connection is kept open. Counts the requests still unanswered after 3 s.
import os, signal, socket, sys, time, select
port, pid, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
os.kill(pid, signal.SIGSTOP)
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(n)]
for s in socks:
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
os.kill(pid, signal.SIGCONT)
start = time.monotonic()
pending, deadline, last = set(socks), start + 3, start
while pending and time.monotonic() < deadline:
    r, _, _ = select.select(list(pending), [], [], 0.1)
    for s in r:
        if s.recv(4096):
            pending.discard(s)
            last = time.monotonic()
print(f"{n} keep-alive connections accepted in one burst: {len(pending)} requests unanswered after 3 s; "
      f"the last answer came {(last - start) * 1000:.0f} ms after the burst")
