"""The real `kubectl proxy` in front of a stand-in for the Kubernetes API server: as much of the
API server as `kubectl proxy` and the pod proxy (`/api/v1/namespaces/<ns>/pods/<pod>/proxy/...`)
use, for pods that run without a cluster.

The stand-in answers:
- `GET /version` with a small version object: kubectl asks for it before it serves.
- The pod proxy, the way the API server does (the pod registry's ResourceLocation, then the
  apimachinery proxy handler and transport):
  - no such pod: 404 NotFound `pods "<pod>" not found`;
  - a pod without an address yet: 400 BadRequest `address not allowed`;
  - a pod that does not take the connection: 503 ServiceUnavailable
    `error trying to reach service: dial tcp <ip>:<port>: connect: connection refused`
    (or whatever the dial met: no route to host, i/o timeout);
  - GET or HEAD of `.../proxy` itself: 301 to `.../proxy/` (so relative links resolve under it);
  - otherwise the request goes to the pod, at the port named as `<pod>:<port>` or else the pod's
    first container port, with its path after `/proxy` and its query string as they came, its
    headers less the hop-by-hop ones (`X-Forwarded-For` extended, `X-Forwarded-Uri` set), and its
    body as it came (Content-Length or chunked). The pod's status, headers and body come back,
    the body streamed as it arrives.
  Errors are `Status` objects as the API server writes them: JSON, pretty-printed for curl.
- Anything else: 404 NotFound, as for an unknown resource.

Not emulated: authentication; `https:<pod>:<port>` targets; the refusal of pod addresses that
are not global unicast (so a server on 127.0.0.1 can stand for a pod too); and the rewriting of
text/html answers (the API server points absolute same-host links at the proxy prefix and
re-serialises the tags it rewrites; relative links it leaves alone, as this does).
"""

import collections
import http.client as httpclient
import http.server
import json
import os
import posixpath
import re
import socket
import subprocess
import threading
import time

VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0", "platform": "linux/amd64"}
PROXY_PATH = re.compile(r"^/api/v1/namespaces/([^/]+)/pods/([^/]+)/proxy(/.*)?$")
# Go's ReverseProxy drops these (and whatever Connection names) on the way in and out.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
              "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"}
DIAL_TIMEOUT = 10  # the API server's dialer waits 30 s; a bounded test waits less
READ_TIMEOUT = 60  # no limit in the API server (the proxy is a long-running request)
BLOCK = 64 * 1024


def status_object(code, reason, message, details=None):
    obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason}
    if details:
        obj["details"] = details
    obj["code"] = code
    return obj


def hop_by_hop(headers):
    """The headers a proxy does not pass on: the standard ones and those Connection names."""
    named = {t.strip().lower() for v in headers.get_all("Connection", []) for t in v.split(",")}
    return HOP_BY_HOP | named


def dial_error(ip, port, err):
    """A failed connect in Go's words: `dial tcp 10.88.0.5:8000: connect: connection refused`."""
    if isinstance(err, (socket.timeout, TimeoutError)):
        return f"dial tcp {ip}:{port}: i/o timeout"
    reason = os.strerror(err.errno) if err.errno else str(err)
    return f"dial tcp {ip}:{port}: connect: {reason[:1].lower()}{reason[1:]}"


class ApiServer:
    """The stand-in, on 127.0.0.1 and a free port, served from a thread of this process.

    `lookup(namespace, pod)` says where a pod is: None when there is no such pod, else
    (ip or None when it has no address yet, its first container port or None)."""

    def __init__(self, lookup, log_path=os.devnull):
        self.lookup = lookup
        self.log = open(log_path, "a", buffering=1)
        # (method, pod, request target sent to it), the latest last: what the pod was asked.
        self.forwarded = collections.deque(maxlen=1000)
        handler = type("Handler", (_Handler,), {"api": self})
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.log.close()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api = None  # the ApiServer, set on the subclass

    def log_message(self, fmt, *args):
        if not self.api.log.closed:
            self.api.log.write(f"{self.address_string()} {fmt % args}\n")

    def do_request(self):
        raw_path, _, query = self.path.partition("?")
        if self.command == "GET" and raw_path == "/version":
            return self.send_json(200, VERSION)
        m = PROXY_PATH.match(raw_path)
        if not m:
            return self.send_status(404, "NotFound", "the server could not find the requested "
                                    "resource")
        namespace, pod_id, rest = m.group(1), m.group(2), m.group(3) or ""
        # `<pod>`, `<pod>:<port>` or `<scheme>:<pod>:<port>`; only plain http is emulated.
        parts = pod_id.split(":")
        if len(parts) == 3 and parts[0] == "http":
            parts = parts[1:]
        if len(parts) > 2 or not parts[0] or (len(parts) == 2 and not parts[1].isdigit()):
            return self.send_status(400, "BadRequest", f'invalid pod request "{pod_id}"')
        name = parts[0]
        where = self.api.lookup(namespace, name)
        if where is None:
            return self.send_status(404, "NotFound", f'pods "{name}" not found',
                                    {"name": name, "kind": "pods"})
        ip, port = where
        port = int(parts[1]) if len(parts) == 2 else port
        if not ip:
            return self.send_status(400, "BadRequest", "address not allowed")
        if not rest and self.command in ("GET", "HEAD"):
            self.send_response(301)
            self.send_header("Location", raw_path + "/" + ("?" + query if query else ""))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        target = (rest or "/") + ("?" + query if query else "")
        # The path the client asked for, cleaned, keeping a trailing slash (as path.Join + "/").
        forwarded_uri = posixpath.normpath(raw_path) + ("/" if rest.endswith("/") else "")
        self.forward(name, ip, port or 80, target, forwarded_uri)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_request

    def forward(self, name, ip, port, target, forwarded_uri):
        conn = httpclient.HTTPConnection(ip, port, timeout=DIAL_TIMEOUT)
        try:
            resp = self.ask_pod(conn, name, ip, port, target, forwarded_uri)
            if resp is not None:
                self.relay(resp)
        except (OSError, httpclient.HTTPException):
            self.close_connection = True  # cut mid-body: the client sees it cut too
        finally:
            conn.close()

    def ask_pod(self, conn, name, ip, port, target, forwarded_uri):
        """The pod's response, or None when an error has been answered instead."""
        try:
            conn.connect()
        except OSError as err:
            return self.send_status(503, "ServiceUnavailable",
                                    f"error trying to reach service: {dial_error(ip, port, err)}")
        try:
            conn.sock.settimeout(READ_TIMEOUT)
            self.api.forwarded.append((self.command, name, target))
            conn.putrequest(self.command, target, skip_host=True, skip_accept_encoding=True)
            hop = hop_by_hop(self.headers) | {"x-forwarded-for", "x-forwarded-uri"}
            for k, v in self.headers.items():
                if k.lower() not in hop:
                    conn.putheader(k, v)
            prior = ", ".join(self.headers.get_all("X-Forwarded-For", []))
            client = self.client_address[0]
            conn.putheader("X-Forwarded-For", f"{prior}, {client}" if prior else client)
            conn.putheader("X-Forwarded-Uri", forwarded_uri)
            chunked = "chunked" in self.headers.get("Transfer-Encoding", "").lower()
            if chunked:
                conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            try:
                self.copy_body(conn, chunked)
            except OSError:
                # The pod may have answered early and closed: its answer still counts. The rest
                # of the client's body is unread, so this connection cannot carry another request.
                self.close_connection = True
            except ValueError:
                return self.send_status(400, "BadRequest", "malformed chunked request body")
            return conn.getresponse()
        except (OSError, httpclient.HTTPException) as err:
            msg = "EOF" if isinstance(err, httpclient.RemoteDisconnected) else str(err)
            return self.send_status(503, "ServiceUnavailable",
                                    f"error trying to reach service: {msg}")

    def copy_body(self, conn, chunked):
        if not chunked:
            left = int(self.headers.get("Content-Length") or 0)
            while left:
                block = self.rfile.read(min(left, BLOCK))
                if not block:
                    raise ConnectionError("the client's body ended early")
                conn.send(block)
                left -= len(block)
            return
        while True:
            size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
            if size == 0:
                while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: dropped, as hop-by-hop
                conn.send(b"0\r\n\r\n")
                return
            data = self.rfile.read(size)
            self.rfile.readline(8)
            conn.send(b"%x\r\n%s\r\n" % (len(data), data))

    def relay(self, resp):
        self.send_response_only(resp.status, resp.reason)
        hop = hop_by_hop(resp.headers)
        for k, v in resp.headers.items():
            if k.lower() not in hop:
                self.send_header(k, v)
        bodiless = self.command == "HEAD" or resp.status in (204, 304) or resp.status < 200
        chunked = not bodiless and resp.headers.get("Content-Length") is None
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if bodiless:
            return
        while True:
            block = resp.read1(BLOCK)
            if not block:
                break
            self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        elif resp.length:
            self.close_connection = True  # the pod sent less than it announced: so does this

    def send_status(self, code, reason, message, details=None):
        if self.headers.get("Content-Length") or self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # the body is left unread
        self.send_json(code, status_object(code, reason, message, details))

    def send_json(self, code, obj):
        # The API server pretty-prints for curl, wget and browsers.
        agent = self.headers.get("User-Agent", "")
        if agent.startswith(("curl", "Wget", "Mozilla/5.0")):
            body = json.dumps(obj, indent=2).encode()
        else:
            body = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class KubectlProxy:
    """The real `kubectl proxy`, on 127.0.0.1 and a free port, in front of `server_url`, with a
    kubeconfig and cache of its own in `workdir`."""

    def __init__(self, server_url, workdir, preexec_fn=None, deadline_s=15):
        self.kubeconfig = os.path.join(workdir, "kubeconfig")
        with open(self.kubeconfig, "w") as f:
            f.write("apiVersion: v1\nkind: Config\n"
                    f"clusters:\n- name: e2e\n  cluster:\n    server: {server_url}\n"
                    "users:\n- name: e2e\n  user: {}\n"
                    "contexts:\n- name: e2e\n  context:\n    cluster: e2e\n    user: e2e\n"
                    "current-context: e2e\n")
        self.log_path = os.path.join(workdir, "kubectl-proxy.log")
        env = {k: v for k, v in os.environ.items()
               if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "kubeconfig")}
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                ["kubectl", f"--kubeconfig={self.kubeconfig}",
                 f"--cache-dir={os.path.join(workdir, 'kube-cache')}", "proxy", "--port=0"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
                preexec_fn=preexec_fn)
        end = time.monotonic() + deadline_s
        while True:
            with open(self.log_path) as f:
                m = re.search(r"Starting to serve on 127\.0\.0\.1:(\d+)", f.read())
            if m:
                self.port = int(m.group(1))
                return
            if self.proc.poll() is not None or time.monotonic() > end:
                self.stop()
                with open(self.log_path) as f:
                    raise RuntimeError(f"kubectl proxy did not start within {deadline_s} s "
                                       f"(exit {self.proc.returncode}): {f.read().strip()}")
            time.sleep(0.05)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
