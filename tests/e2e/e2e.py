"""hello-stateful end to end: the README's flows, through the real `kubectl proxy` and each
ingress component, and what a StatefulSet promises (stable names and storage, ordered scaling,
rolling restarts without lost writes, peer discovery, every pod's data on /cluster), against the
real image run as a StatefulSet emulated on this machine (emulation.py), with every value taken
from the rendered manifests (manifests.py). Run by tests/e2e/run (`make e2e`).

The README's kubectl proxy commands are run with curl as written and what they print compared
byte for byte with its text blocks (RFC 3339 times replaced, on both sides, by <time1>, <time2>,
... so only which times are equal is compared): Verify, "Take a pod out of service" and "Whose
volume is it?". Past them: every pod's /info (the downward API's namespace, address and node);
a pod out of service leaving DNS, /cluster and the ingress within the DNS TTL plus its probe's
failure time, and an ordered scale-up waiting behind it; a pod back on its own volume, and two
pods started on each other's (the server's warning, /info, / and every /cluster mark it)."""

import json
import os
import random
import re
import shlex
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import threading
import time
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import manifests  # noqa: E402
from emulation import Cluster, ZONE, DNS_TTL, NODE, http, request, log, sh, RUN  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Where the README's examples reach `kubectl proxy` (its default port) and the ingress.
README_PROXY = "localhost:8001"
README_INGRESS = "http://localhost"
# What the emulation itself may add to a bound on the kubelet's timing: rewriting dnsmasq's and
# nginx's configurations and waiting until both serve the new endpoints (a cluster's endpoints
# controller, CoreDNS and ingress controller take their own time too).
RECONCILE_SLACK = 2.0


class Failed(Exception):
    pass


def ok(msg):
    print(f"  ok: {msg}", flush=True)


def expect(cond, msg, detail=""):
    if not cond:
        raise Failed(f"{msg}{': ' + detail if detail else ''}")
    ok(msg)


def equal(got, want, msg):
    if got != want:
        raise Failed(f"{msg}\n    expected: {want!r}\n    got:      {got!r}")
    ok(msg)


def natural(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def ordinal(name):
    """The ordinal of a StatefulSet pod's name, or None."""
    m = re.fullmatch(r".*-(0|[1-9]\d*)", name)
    return int(m.group(1)) if m else None


def token(prefix):
    return f"{prefix}-{''.join(random.choices(string.ascii_lowercase, k=6))};"


def readme_text():
    with open(os.path.join(REPO, "README.md")) as f:
        return f.read()


def readme_blocks():
    """(language, text) of every fenced block of the README, in order; a block indented under
    a list item is given without its indentation."""
    blocks = []
    for indent, lang, text in re.findall(r"^( *)```(\w*)\n(.*?)^\1```$", readme_text(),
                                         re.M | re.S):
        lines = text.splitlines(keepends=True)
        blocks.append((lang, "".join(ln[len(indent):] if ln.startswith(indent) else ln
                                     for ln in lines)))
    return blocks


def readme_example(what, match):
    """The lines of the README's first ```sh block for which match(lines) holds, and the block
    after it when that is ```text (what the commands print), else None."""
    blocks = readme_blocks()
    for (lang, text), after in zip(blocks, blocks[1:] + [("", "")]):
        if lang == "sh" and match(text.splitlines()):
            return text.splitlines(), (after[1].encode() if after[0] == "text" else None)
    raise Failed(f"the README has no ```sh block {what}")


def run_readme_curl(line, address, port):
    """stdout of one `curl` line of the README, run as written but with the emulation's `port`
    on loopback for the one in the README's `address`."""
    args = shlex.split(line)
    urls = [i for i, a in enumerate(args) if a.startswith(address + "/")]
    if args[0] != "curl" or len(urls) != 1:
        raise Failed(f"README line {line!r}: not a curl to {address}/...")
    host = urlsplit(address if "//" in address else "//" + address).hostname
    actual = re.sub(r"(:\d+)?$", f":{port}", address, count=1)
    args[urls[0]] = actual + args[urls[0]][len(address):]
    # Silent progress, no proxy from the environment, a deadline, and the README's host pinned
    # to 127.0.0.1, where the emulation listens: none of it changes the request.
    out = subprocess.run(["curl", "-sS", "--noproxy", "*", "--max-time", "30",
                          "--resolve", f"{host}:{port}:127.0.0.1"] + args[1:],
                         capture_output=True, timeout=40)
    if out.returncode != 0:
        raise Failed(f"{line}: curl exit {out.returncode}: {out.stderr.decode().strip()}")
    return out.stdout


def readme_json(what, match):
    """The README's first ```json block for which match(parsed) holds, parsed."""
    for lang, text in readme_blocks():
        if lang == "json":
            try:
                parsed = json.loads(text)
            except ValueError as err:
                raise Failed(f"a ```json block of the README is not JSON: {err}: {text!r}")
            if match(parsed):
                return parsed
    raise Failed(f"the README has no ```json block {what}")


def readme_quote(what, pattern):
    """Group 1 of the first match of `pattern` in the README's text: a line it quotes inline."""
    m = re.search(pattern, readme_text())
    if not m:
        raise Failed(f"the README does not quote {what} (no match for {pattern!r})")
    return m.group(1)


# An RFC 3339 time, as the server writes them (to the second, UTC) and any other form.
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)")
TIME_BYTES = re.compile(TIME.pattern.encode())


def normalise_times(data):
    """`data` with its RFC 3339 times as <time1>, <time2>, ... in the order they first appear:
    what is left to compare is where the times are and which of them are the same."""
    seen = {}
    return TIME_BYTES.sub(lambda m: b"<time%d>" % seen.setdefault(m.group(0), len(seen) + 1),
                          data)


def shape(value):
    """The JSON value's shape: objects as their keys in order with each value's shape, arrays
    as the set of their elements' shapes, RFC 3339 strings as "time", other scalars as their
    type ("null" for null)."""
    if isinstance(value, dict):
        return tuple((k, shape(v)) for k, v in value.items())
    if isinstance(value, list):
        return ("array", frozenset(shape(v) for v in value))
    if isinstance(value, str) and TIME.fullmatch(value):
        return "time"
    if value is None:
        return "null"
    return type(value).__name__  # bool is bool, not int


def as_shown(outputs):
    """Command outputs as the README shows them: each starts on a line of its own."""
    return b"".join(o if o.endswith(b"\n") else o + b"\n" for o in outputs)


def posted(line):
    """The body a README `curl ... -d <body>` line posts, or None."""
    args = shlex.split(line)
    return args[args.index("-d") + 1].encode() if "-d" in args else None


class E2E:
    def __init__(self, cluster):
        self.c = cluster
        self.app = cluster.app
        a = self.app
        self.svc_fqdn = f"{a.service_name}.{a.namespace}.svc.{ZONE}."
        self.srv_port = a.svc_ports[0][2]
        self.port_name = a.svc_ports[0][0]
        self.peer_timeout = int(a.env.get("PEER_TIMEOUT_MS",
                                          cluster.defaults["PEER_TIMEOUT_MS"])) / 1000
        self.cap = shown_bytes_cap()

    # ----- expectations computed from the emulated cluster -----

    def expected_get(self, fqdns=None):
        if fqdns is None:
            fqdns = [f for f, _ in self.c.endpoints()]
        lines = "".join(f"{f}:{self.srv_port}\n" for f in sorted(fqdns, key=natural))
        return f"{self.svc_fqdn}\n{lines}".encode()

    def wait_get(self, what, comp="nginx", fqdns=None):
        """GET /stateful/get until it lists exactly the ready endpoints. The pods cache the SRV
        answer for its TTL (as they would CoreDNS's), so a change shows within the TTL."""
        want = self.expected_get(fqdns)
        end = time.monotonic() + DNS_TTL + 5
        got = None
        while time.monotonic() < end:
            try:
                got = self.c.ingress("GET", "/stateful/get", comp=comp)
            except OSError as e:
                got = (0, str(e).encode())
            if got == (200, want):
                n = want.count(b"\n") - 1
                ok(f"{what}: GET /stateful/get through the {comp} ingress lists exactly the "
                   f"{n} ready endpoint(s)")
                return
            time.sleep(0.25)
        raise Failed(f"{what}: GET /stateful/get through the {comp} ingress\n"
                     f"    expected: 200 {want!r}\n    got:      {got!r}")

    def settle(self):
        """Wait out the DNS TTL since the last endpoint change: until then a pod may still use
        a cached answer with a restarted peer's old address, as it would with CoreDNS."""
        wait = self.c.changed_at + DNS_TTL + 0.5 - time.monotonic()
        if wait > 0:
            log(f"waiting {wait:.1f} s for the pods' cached DNS answers to expire (TTL {DNS_TTL} s)")
            time.sleep(wait)

    def store_proxy(self, pod, body):
        before = self.c.file_bytes(pod.i)
        got = self.c.proxy(pod.name, "POST", "/store", body.encode())
        want = (200, f"hello from v2:{pod.name}".encode())
        if got != want:
            raise Failed(f"POST /store to {pod.name} through kubectl proxy: "
                         f"expected {want!r}, got {got!r}")
        # The greeting is the same whatever was stored: the file says whether the body arrived.
        after = self.c.file_bytes(pod.i)
        if after != before + body.encode():
            raise Failed(f"POST /store to {pod.name} through kubectl proxy: its data file gained "
                         f"{after[len(before):]!r}, not the body {body!r}")

    def shown(self, data):
        if len(data) <= self.cap:
            return data
        return f"(last {self.cap} of {len(data)} bytes) ".encode() + data[-self.cap:]

    def fqdn(self, i):
        a = self.app
        return f"{a.pod_name(i)}.{a.service_name}.{a.namespace}.svc.{ZONE}."

    def lineage(self, i):
        """The lineage the server of pod i recorded at its start, from the file beside its
        data file on the volume (what its /info shows until it starts again)."""
        path = self.c.data_file_on_host(i) + ".lineage"
        try:
            with open(path) as f:
                return json.load(f)
        except FileNotFoundError:
            return None
        except ValueError as err:
            raise Failed(f"{path} on {self.app.pod_name(i)}'s volume is not JSON: {err}")

    def moved_mark(self, i):
        """What /cluster puts before a pod's data when its volume's last start was another
        pod's."""
        moved = (self.lineage(i) or {}).get("moved_from")
        return f"(volume changed hands: last used by {moved['pod']}) ".encode() if moved else b""

    def expected_cluster(self, hit, errors=()):
        """The /cluster page answered by `hit`: a line per ordinal up to the highest of the
        ready pods and `hit`'s own. A ready pod's line holds its data from its file on the
        volume, after a mark when the lineage on its volume says it changed hands; peers in
        `errors` hold `error: <reason>` instead (checked by pattern). An ordinal without a ready
        pod is `not in the Service: not ready, or gone`, or for `hit` itself `this pod, <why>`
        (checked by pattern)."""
        page = f"You've hit {hit}\nData stored in the cluster:\n".encode()
        ready = {p.i: p for p in self.c.ready_pods()}
        own = ordinal(hit)
        for k in range(max(list(ready) + ([own] if own is not None else []), default=-1) + 1):
            page += f"- {self.fqdn(k)}: ".encode()
            if k not in ready:
                page += b"not in the Service: " + (b"this pod, \x00" if k == own
                                                   else b"not ready, or gone")
            elif k in errors:
                page += b"error: \x00"
            else:
                page += self.moved_mark(k) + self.shown(self.c.file_bytes(k))
            page += b"\n"
        return page

    def check_cluster(self, got, what, errors=()):
        status, body = got
        if status != 200:
            raise Failed(f"{what}: expected 200, got {status} {body!r}")
        m = re.match(rb"You've hit (\S+)\n", body)
        if not m:
            raise Failed(f"{what}: no 'You've hit' line: {body!r}")
        hit = m.group(1).decode()
        want = self.expected_cluster(hit, errors)
        # Error reasons vary (timed out, refused, unreachable): one line, non-empty.
        pattern = re.escape(want).replace(re.escape(b"\x00"), rb"[^\n]+")
        if not re.fullmatch(pattern, body):
            raise Failed(f"{what}\n    expected: {want!r} (\\x00: any one-line reason)\n"
                         f"    got:      {body!r}")
        ok(f"{what}: the page from {hit} matches every pod's file"
           + (f" ({len(errors)} peer error line(s))" if errors else ""))
        return hit

    # ----- scenarios -----

    def readme_flows(self):
        """The README's `kubectl proxy` examples, run with curl as written, on the fresh
        StatefulSet the README assumes: what they print is what the README shows."""
        proxy_port = self.c.proxy_port
        lines, shown = readme_example(
            "that starts `kubectl proxy &`", lambda ls: ls[:1] == ["kubectl proxy &"])
        curls = lines[1:]
        outputs = [run_readme_curl(line, README_PROXY, proxy_port) for line in curls]
        equal(as_shown(outputs), shown,
              f"the README's {len(curls)} kubectl proxy commands print what it shows, through the "
              "real kubectl proxy")
        for line in curls:
            print(f"       {line}")
        pod = re.search(r"/pods/([^/]+)/proxy/", curls[0]).group(1)
        ordinal = {p.name: i for i, p in self.c.pods.items()}.get(pod)
        if ordinal is None:
            raise Failed(f"the README's example asks {pod}, which the StatefulSet does not have")
        equal(self.c.file_bytes(ordinal), b"".join(posted(line) for line in curls
                                                   if posted(line) and f"/pods/{pod}/" in line),
              f"{pod}'s data file on its volume is the bodies posted, in order")
        # "after the stores above": the README's store through the ingress, then /cluster.
        store, _ = readme_example(f"with a store through {README_INGRESS}",
                                  lambda ls: any(README_INGRESS + "/stateful/store" in line
                                                 for line in ls))
        store = next(line for line in store if "/stateful/store" in line)
        reply = run_readme_curl(store, README_INGRESS, self.c.ports["nginx"])
        m = re.fullmatch(rb"hello from v2:(\S+)", reply)
        expect(m and m.group(1).decode() in {p.name for p in self.c.ready_pods()},
               f"{store} (the nginx component) answers 'hello from v2:<a ready pod>'", reply)
        lines, shown = readme_example(
            "that starts with a kubectl proxy /cluster",
            lambda ls: bool(ls) and ls[0].startswith(f"curl {README_PROXY}/")
            and ls[0].endswith("/proxy/cluster"))
        page = run_readme_curl(lines[0], README_PROXY, proxy_port)
        asked = re.search(r"/pods/([^/]+)/proxy/", lines[0]).group(1)
        hit = self.check_cluster((200, page), f"{lines[0]} through the real kubectl proxy")
        equal(hit, asked, "the page is from the pod asked")
        # The ingress chose the pod that took the README's store (the README shows it on
        # hello-stateful-1); with the body on that pod's line, the page is the README's.
        body = posted(store)
        landed = next(p for p in self.c.ready_pods() if p.name == m[1].decode())
        lines = shown.split(b"\n")
        held = [k for k, line in enumerate(lines) if line.startswith(b"- ") and line.endswith(body)]
        to = [k for k, line in enumerate(lines)
              if line.startswith(f"- {landed.fqdn(self.app)}: ".encode())]
        if len(held) != 1 or len(to) != 1:
            raise Failed(f"the README's /cluster page has no one line ending in {body!r}, or no "
                         f"one line for {landed.name}: {shown!r}")
        lines[held[0]] = lines[held[0]][:-len(body)]
        lines[to[0]] += body
        equal(page, b"\n".join(lines), f"with {body.decode()!r} on the line of {landed.name}, "
              "which took it, the page is the one the README shows")

    def proxy_answers(self):
        """The pod proxy past the README's flows: the pod's own answers come back unchanged;
        the API server answers itself when there is no pod to ask."""
        pod = self.c.pods[0]
        direct_port = self.app.proxy_port
        asks = (("GET", "/no/such%20path", None), ("POST", "/data", b"x"), ("HEAD", "/data", None),
                ("GET", "/healthz?probe=1&x=%2F", None))
        for method, path, body in asks:
            got = self.c.proxy_full(pod.name, method, path, body)
            want = request(pod.ip, direct_port, method, path, body)
            headers = ("Content-Type", "Content-Length", "Allow")
            equal((got[0], [got[1].get(h) for h in headers], got[2]),
                  (want[0], [want[1].get(h) for h in headers], want[2]),
                  f"{method} .../proxy{path} through kubectl proxy: the pod's own answer "
                  f"({want[0]}; {', '.join(h for h in headers if want[1].get(h))}; body)")
            equal(self.c.api.forwarded[-1], (method, pod.name, path),
                  "the pod was asked for exactly that path and query string")
        status, headers, _ = self.c.proxy_full(pod.name, "GET", "?x=1")
        equal((status, headers.get("Location")), (301, self.c.proxy_path(pod.name, "/?x=1")),
              "GET .../proxy (no slash) is redirected to .../proxy/, the query kept")
        gone = self.app.pod_name(max(self.c.pods) + 1)
        self.expect_status(self.c.proxy(gone, "GET", "/get"), 404, "NotFound",
                           f'pods "{gone}" not found', f"GET .../pods/{gone}/proxy/get (no pod)")
        closed = next(p for p in range(1, 1024) if p not in {port for _, port in self.app.ports})
        self.expect_status(
            self.c.proxy(f"{pod.name}:{closed}", "GET", "/"), 503, "ServiceUnavailable",
            f"error trying to reach service: dial tcp {pod.ip}:{closed}: connect: connection "
            "refused", f"GET .../pods/{pod.name}:{closed}/proxy/ (a port nothing listens on)")

    def expect_status(self, got, code, reason, message, what):
        """The API server's own answer: a Status object with this code, reason and message."""
        status, body = got
        try:
            obj = json.loads(body)
        except ValueError:
            obj = {"not JSON": body}
        equal((status, obj.get("kind"), obj.get("code"), obj.get("reason"), obj.get("message")),
              (code, "Status", code, reason, message), f"{what}: {code} {message}")

    def s1_seed_flows(self):
        self.readme_flows()
        self.proxy_answers()
        for comp in self.c.routes:
            print(f"  -- through the {comp} component: "
                  + "; ".join(r.desc for r in self.c.routes[comp]))
            self.wait_get(f"{comp}", comp)
            body = token(f"seed-{comp}")
            status, reply = self.c.ingress("POST", "/stateful/store", body.encode(), comp=comp)
            m = re.fullmatch(rb"hello from v2:(\S+)", reply)
            names = {p.name: p for p in self.c.ready_pods()}
            expect(status == 200 and m and m.group(1).decode() in names,
                   f"POST /stateful/store through {comp} answers 'hello from v2:<a ready pod>'",
                   f"{status} {reply!r}")
            pod = names[m.group(1).decode()]
            expect(self.c.file_bytes(pod.i).endswith(body.encode()),
                   f"the body stored through {comp} is at the end of {pod.name}'s file")
            status, page = self.c.ingress("GET", "/stateful", comp=comp)
            expect(status == 200 and re.search(rb"hello-stateful|" + re.escape(pod.name.encode()
                                                                                ), page),
                   f"GET /stateful through {comp} reaches the pod's / page", f"{status} {page!r}")
            status, _ = self.c.ingress("GET", "/statefulness/get", comp=comp)
            equal(status, 404, f"GET /statefulness/get through {comp} is not routed as /get")

    def s2_identity(self):
        app = self.app
        for pod in self.c.ready_pods():
            path = sh("podman", "inspect", pod.ctr, "--format", "{{.ResolvConfPath}}").strip()
            with open(path) as f:
                conf = f.read()
            search = f"search {app.namespace}.svc.{ZONE} svc.{ZONE} {ZONE}"
            expect(search in conf and f"nameserver {self.c.gateway}" in conf
                   and "ndots:5" in conf, f"{pod.name}: resolv.conf is a pod's ({search}, "
                   f"ndots:5, the cluster DNS)", conf)
            a = self.c.dig("A", pod.fqdn(app), "+short").split()
            equal(a, [pod.ip], f"{pod.fqdn(app)} resolves to {pod.name}'s address")
            got = http(a[0], self.srv_port, "POST", "/store", token("identity").encode())
            equal(got, (200, f"hello from v2:{pod.name}".encode()),
                  f"POST /store to {a[0]}:{self.srv_port} answers with its own hostname")
            st = os.stat(self.c.data_file_on_host(pod.i))
            equal((st.st_uid, st.st_gid), (app.uid, app.fs_group if app.fs_group is not None
                                            else app.gid),
                  f"{pod.name} wrote its data file on its own volume at {app.mount_path} as the "
                  "manifest's user (uid, and the fsGroup as group)")
        srv = self.c.dig("SRV", f"_{self.port_name}._tcp.{self.svc_fqdn}", "+short").splitlines()
        want = sorted(f"0 {100 // len(self.c.ready_pods())} {self.srv_port} {p.fqdn(app)}"
                      for p in self.c.ready_pods())
        equal(sorted(srv), want, f"SRV _{self.port_name}._tcp.{self.svc_fqdn} lists every "
              "ready pod (priority 0, weight 100/n)")

    def info(self, pod_name):
        """A pod's /info through kubectl proxy, parsed."""
        status, headers, body = self.c.proxy_full(pod_name, "GET", "/info")
        if status != 200 or headers.get("Content-Type") != "application/json":
            raise Failed(f"GET .../pods/{pod_name}/proxy/info: {status} "
                         f"{headers.get('Content-Type')}: {body!r}")
        try:
            return json.loads(body)
        except ValueError as err:
            raise Failed(f"GET .../pods/{pod_name}/proxy/info is not JSON: {err}: {body!r}")

    def check_info_shape(self, info, what, moved=False):
        """/info has the keys, in order, and the shape of the README's example (times where
        it has times); `moved`: with a start in volume.moved_from, where the example has null."""
        example = readme_json("that is a pod's /info", lambda j: isinstance(j, dict)
                              and "hostname" in j and "volume" in j)
        if moved:
            example["volume"]["moved_from"] = example["volume"]["created"]
        equal(shape(info), shape(example), f"{what}: the keys and shape of the README's /info "
              "example" + (", with a start in volume.moved_from" if moved else ""))

    def s8_info(self):
        """Every pod's /info through kubectl proxy: who and where it is, from the downward API
        the manifest passes, against what the emulation gave the pod."""
        want_fields = {"POD_NAMESPACE": "metadata.namespace", "POD_IP": "status.podIP",
                       "NODE_NAME": "spec.nodeName"}
        equal({k: v for k, v in self.app.field_env.items() if k in want_fields}, want_fields,
              "the manifest passes the pod's namespace, IP and node from the downward API")
        for pod in self.c.ready_pods():
            info = self.info(pod.name)
            self.check_info_shape(info, f"{pod.name}'s /info")
            keys = ("hostname", "ordinal", "namespace", "pod_ip", "node", "ready")
            equal({k: info.get(k) for k in keys},
                  {"hostname": pod.name, "ordinal": pod.i, "namespace": self.app.namespace,
                   "pod_ip": pod.ip, "node": NODE, "ready": True},
                  f"{pod.name}'s /info through kubectl proxy: its name, the ordinal from it, the "
                  f"namespace {self.app.namespace}, its address {pod.ip} and node {NODE}; ready")

    def pod_named(self, name, what):
        pod = next((p for p in self.c.ready_pods() if p.name == name), None)
        if pod is None:
            raise Failed(f"{what} names {name}, which is not a ready pod of the StatefulSet here")
        return pod

    def wait_gets(self, pods, fqdns, t0, bound, what):
        """Asks each pod's /get through kubectl proxy until it lists exactly `fqdns`; fails
        unless every one does within `bound` seconds of t0."""
        want = self.expected_get(fqdns)
        pending, last = {p.name for p in pods}, {}
        while True:
            for p in pods:
                if p.name in pending:
                    got = self.c.proxy(p.name, "GET", "/get")
                    if got == (200, want):
                        pending.discard(p.name)
                    last[p.name] = got
            took = time.monotonic() - t0
            if not pending or took > bound:
                break
            time.sleep(0.25)
        if pending:
            raise Failed(f"{what}: {took:.1f} s on, the /get of {', '.join(sorted(pending))} "
                         f"still is not\n    expected: {want!r}\n    got:      "
                         f"{ {n: last[n] for n in pending}!r}")
        ok(f"{what}: the /get of every pod ({', '.join(p.name for p in pods)}) lists exactly "
           f"the {len(fqdns)} others within {took:.1f} s (bound {bound:.0f} s)"
           if len(fqdns) < len(pods) else
           f"{what}: the /get of every pod ({', '.join(p.name for p in pods)}) lists all "
           f"{len(fqdns)} within {took:.1f} s (bound {bound:.0f} s)")

    def s9_out_of_service(self):
        """The README's "Take a pod out of service": its kubectl proxy commands run as written,
        what they print compared with what it shows (times aside); then what it says to watch:
        the kubelet marks the pod not Ready, every pod's /get drops it within the DNS TTL plus
        the probe's failure time, a peer's /cluster shows the hole, the ingress sends it
        nothing; and after enable, all of it back."""
        app, port = self.app, self.c.proxy_port
        lines, shown = readme_example("that disables a pod's readiness through kubectl proxy",
                                      lambda ls: any("/proxy/readyz/disable" in ln for ln in ls))
        name = re.search(r"/pods/([^/]+)/proxy/readyz/disable", "\n".join(lines)).group(1)
        pod = self.pod_named(name, "the README's disable example")
        fqdn = self.fqdn(pod.i)
        others = [p for p in self.c.ready_pods() if p is not pod]
        everyone = self.c.ready_pods()
        enabled = False
        t0 = time.monotonic()
        try:
            out = as_shown([run_readme_curl(ln, README_PROXY, port) for ln in lines])
            equal(normalise_times(out), normalise_times(shown or b""),
                  f"the README's {len(lines)} commands that take {name} out of service print "
                  "what it shows (times aside: one time, twice)")
            for ln in lines:
                print(f"       {ln}")
            since = TIME_BYTES.search(out).group(0).decode()
            why = f"readiness disabled by POST /readyz/disable at {since}"
            equal(self.c.proxy(name, "GET", "/readyz"), (503, f"not ready: {why}\n".encode()),
                  f"{name}'s /readyz answers 503 with the reason")
            equal(self.c.proxy(name, "GET", "/healthz"), (200, b"ok\n"),
                  f"{name}'s /healthz still answers 200 (liveness untouched: no restart)")
            info = self.info(name)
            equal((info["ready"], info["not_ready_because"]), (False, why),
                  f"{name}'s /info says why it is not ready")
            bound = self.c.failure_seconds() + RECONCILE_SLACK
            noticed = self.c.wait_for(lambda: not pod.ready, bound)
            expect(noticed, f"the kubelet's probe marks {name} not Ready within {bound:.0f} s "
                   f"({app.ready_failures} failures {app.ready_period} s apart), "
                   f"{time.monotonic() - t0:.1f} s after the disable")
            self.wait_gets(everyone, [self.fqdn(p.i) for p in others], t0,
                           DNS_TTL + bound, f"{name} out of service")
            # The README's peer /get, as written: byte for byte what it shows.
            get_lines, get_shown = readme_example(
                "with a peer's /get through kubectl proxy",
                lambda ls: len(ls) == 1 and ls[0].startswith(f"curl {README_PROXY}/")
                and ls[0].endswith("/proxy/get"))
            equal(run_readme_curl(get_lines[0], README_PROXY, port), get_shown,
                  f"{get_lines[0]} prints what the README shows, byte for byte")
            asker = self.pod_named(re.search(r"/pods/([^/]+)/", get_lines[0]).group(1),
                                   "the README's peer /get example")
            # A peer's /cluster shows the hole, in the README's words.
            page = self.c.proxy(asker.name, "GET", "/cluster")
            self.check_cluster(page, f"{asker.name}'s /cluster with {name} out of service")
            gap = readme_quote("a peer's /cluster line for a pod out of service",
                               r"`(- \S+: not in the Service: not ready, or gone)`")
            expect(f"\n{gap}\n".encode() in page[1],
                   f"{asker.name}'s /cluster has the README's line {gap!r}")
            own = readme_quote("the line of a pod out of service on its own /cluster",
                               r"`(not in the Service: this pod, [^`]*?) ?\.\.\.`")
            line = f"- {fqdn}: not in the Service: this pod, {why}"
            expect(line.startswith(f"- {fqdn}: {own}"), f"the README's {own!r} is what {name} "
                   "says of itself", line)
            page = self.c.proxy(name, "GET", "/cluster")
            self.check_cluster(page, f"{name}'s own /cluster while out of service")
            expect(f"\n{line}\n".encode() in page[1], f"{name}'s own /cluster says {line!r}")
            # The ingress sends it nothing, through every component.
            before = self.c.file_bytes(pod.i)
            names = {p.name for p in others}
            for comp in self.c.routes:
                landed = []
                for _ in range(2 * len(others)):
                    body = token(f"no-{name}")
                    status, reply = self.c.ingress("POST", "/stateful/store", body.encode(),
                                                   comp=comp)
                    m = re.fullmatch(rb"hello from v2:(\S+)", reply)
                    if status != 200 or not m or m.group(1).decode() not in names:
                        raise Failed(f"POST /stateful/store through {comp} with {name} out of "
                                     f"service: {status} {reply!r}")
                    landed.append(m.group(1).decode())
                    if not self.c.file_bytes(self.pod_named(landed[-1], "a reply").i).endswith(
                            body.encode()):
                        raise Failed(f"{body!r} is not at the end of {landed[-1]}'s file")
                ok(f"{len(landed)} stores through {comp} all land on {', '.join(sorted(names))} "
                   f"({', '.join(f'{n} x{landed.count(n)}' for n in sorted(set(landed)))})")
            equal(self.c.file_bytes(pod.i), before, f"{name}'s data file gained nothing")
            # Put it back, with the README's command.
            lines, shown = readme_example(
                "that enables a pod's readiness through kubectl proxy",
                lambda ls: any("/proxy/readyz/enable" in ln for ln in ls))
            t1 = time.monotonic()
            out = as_shown([run_readme_curl(ln, README_PROXY, port) for ln in lines])
            enabled = True
            equal(normalise_times(out), normalise_times(shown or b""),
                  f"the README's command that puts {name} back prints what it shows (time aside)")
            equal(TIME_BYTES.findall(out), [since.encode()],
                  "and names the time it was disabled at")
            equal(self.c.proxy(name, "GET", "/readyz"), (200, b"ready\n"),
                  f"{name}'s /readyz answers 200 again")
            bound = (app.ready_period * app.ready_successes + app.ready_timeout
                     + RECONCILE_SLACK)
            expect(self.c.wait_for(lambda: pod.ready, bound),
                   f"the kubelet marks {name} Ready again within {bound:.0f} s, "
                   f"{time.monotonic() - t1:.1f} s after the enable")
            self.wait_gets(everyone, [self.fqdn(p.i) for p in everyone], t1, DNS_TTL + bound,
                           f"{name} back in service")
        finally:
            if not enabled:
                try:
                    self.c.proxy(name, "POST", "/readyz/enable")
                except OSError:
                    pass  # the restore after a failed scenario replaces it

    def s10_ordered_ready(self):
        """The README's ordered scale-up behind a pod that is not ready: with it disabled the
        StatefulSet creates no next pod for a few probe periods; enabled, the scale-up goes
        on, and the new pod comes only after it is Ready. The replica count is restored."""
        app = self.app
        m = re.search(r"`make scale REPLICAS=(\d+)` creates no `([^`]+)`\s+while `([^`]+)` is "
                      r"not ready", readme_text())
        if not m:
            raise Failed("the README no longer says which pod an ordered scale-up waits for")
        n, new, name = int(m.group(1)), m.group(2), m.group(3)
        if len(self.c.pods) + 1 != n or app.pod_name(n - 1) != new:
            raise Failed(f"the README's scale to {n} creating {new} does not fit "
                         f"{len(self.c.pods)} pods")
        held = self.pod_named(name, "the README's ordered scale-up example")
        equal(self.c.proxy(name, "POST", "/readyz/disable")[0], 200,
              f"POST .../pods/{name}/proxy/readyz/disable answers 200")
        errors, thread = [], None
        try:
            bound = self.c.failure_seconds() + RECONCILE_SLACK
            expect(self.c.wait_for(lambda: not held.ready, bound),
                   f"the kubelet marks {name} not Ready within {bound:.0f} s")

            def scale_up():
                try:
                    self.c.scale(n, deadline_s=60)
                except (RuntimeError, AssertionError, OSError) as err:
                    errors.append(err)

            print(f"  -- scale to {n} while {name} is not Ready")
            # A daemon: a harness told to stop (SIGTERM) does not wait for it at exit.
            thread = threading.Thread(target=scale_up, name="statefulset controller",
                                      daemon=True)
            thread.start()
            hold = 3 * app.ready_period
            created = self.c.wait_for(lambda: n - 1 in self.c.pods, hold)
            expect(not created and thread.is_alive() and not errors,
                   f"for {hold} s (3 probe periods) the StatefulSet creates no {new}: it waits "
                   f"for {name}", f"created: {created}, errors: {errors}")
            self.expect_status(self.c.proxy(new, "GET", "/healthz"), 404, "NotFound",
                               f'pods "{new}" not found',
                               f"GET .../pods/{new}/proxy/healthz meanwhile (no such pod)")
            exists = subprocess.run(["podman", "container", "exists", f"{self.c.prefix}-{new}"])
            expect(exists.returncode == 1, f"no container was started for {new}")
            t1 = time.monotonic()
            equal(self.c.proxy(name, "POST", "/readyz/enable")[0], 200,
                  f"POST .../pods/{name}/proxy/readyz/enable answers 200")
            thread.join(60)
            expect(not thread.is_alive() and not errors,
                   f"with {name} enabled the scale-up to {n} completes "
                   f"({time.monotonic() - t1:.1f} s)", f"errors: {errors}")
            pod = self.c.pods.get(n - 1)
            expect(pod is not None and pod.ready and held.ready, f"{new} exists and is Ready")
            expect(pod.created_at >= held.readiness_changed_at,
                   f"{new} was created {pod.created_at - held.readiness_changed_at:.1f} s after "
                   f"{name} was Ready again, not before")
            equal(self.info(new)["ordinal"], n - 1, f"{new}'s /info says ordinal {n - 1}")
            self.wait_get(f"{n} pods")
        finally:
            if thread is not None and thread.is_alive():
                try:
                    self.c.proxy(name, "POST", "/readyz/enable")
                except OSError:
                    pass
                thread.join(60)
        print(f"  -- scale back to {app.replicas}")
        self.c.scale(app.replicas)
        self.wait_get(f"back to {app.replicas} pods")

    def volume_line(self, name):
        """The `volume:` line of a pod's / page, through kubectl proxy."""
        status, page = self.c.proxy(name, "GET", "/")
        m = re.search(rb"^volume: (.*)$", page, re.M)
        if status != 200 or not m:
            raise Failed(f"GET .../pods/{name}/proxy/: no volume line: {status} {page!r}")
        return m.group(1).decode()

    def swap_volumes(self, a, b):
        """Pods a and b stopped (the highest first), their volume folders swapped on the host,
        then started again in order: each starts on the other's volume. A StatefulSet never
        does this; a claim bound by hand to the wrong pod, or a volume restored from another
        pod's snapshot, does."""
        for i in sorted((a, b), reverse=True):
            name = self.app.pod_name(i)
            code, _ = self.c.delete_pod(i)
            if code != 0:
                raise Failed(f"{name} exited {code} on SIGTERM")
        va, vb = self.c.volume(a), self.c.volume(b)
        os.rename(va, va + ".swap")
        os.rename(vb, va)
        os.rename(va + ".swap", vb)
        for i in sorted((a, b)):
            self.c.create_pod(i)
        log(f"{self.app.pod_name(a)} and {self.app.pod_name(b)} started again on each other's "
            "volume")

    def s11_lineage(self):
        """The README's "Whose volume is it?": a pod deleted and recreated comes back to its
        own volume, which counts one more start and did not change hands (the README's
        commands run as written, the kubectl ones emulated); then two pods started on each
        other's volume: each says so in its log, its /info and /, and a peer's /cluster marks
        both. Their volumes are given back after, and each then changed hands once more."""
        port = self.c.proxy_port
        lines, _ = readme_example("that deletes a pod and reads its /info before and after",
                                  lambda ls: any(ln.startswith("kubectl delete pod ")
                                                 for ln in ls))
        names = {p.name: i for i, p in self.c.pods.items()}
        infos = []
        for line in lines:
            deleted = re.fullmatch(r"kubectl delete pod (\S+)", line)
            waited = re.fullmatch(r"kubectl wait --for=condition=Ready pod/(\S+)", line)
            print(f"       {line}")
            if line.startswith(f"curl {README_PROXY}/"):
                out = run_readme_curl(line, README_PROXY, port)
                try:
                    infos.append(json.loads(out))
                except ValueError as err:
                    raise Failed(f"{line}: not JSON: {err}: {out!r}")
            elif deleted and deleted.group(1) in names:
                code, _ = self.c.delete_pod(names[deleted.group(1)])
                equal(code, 0, f"{deleted.group(1)} deleted: exit 0 on SIGTERM")
                # The StatefulSet controller creates it again: the same name, the same claim.
                self.c.create_pod(names[deleted.group(1)], wait_ready=False)
            elif waited and waited.group(1) in names:
                self.c.wait_ready(self.c.pods[names[waited.group(1)]])
            else:
                raise Failed(f"the README's line {line!r}: not a command the e2e can run here")
        if len(infos) != 2:
            raise Failed(f"the README's block reads /info {len(infos)} times, not before and after")
        before, after = infos
        name = after["hostname"]
        for info, when in ((before, "before"), (after, "after")):
            self.check_info_shape(info, f"{name}'s /info {when} the delete")
        vb, va = before["volume"], after["volume"]
        expect(va["created"] is not None and va["created"] == vb["created"],
               f"{name} came back to the volume it created: volume.created the same "
               f"({va['created']})")
        equal(va["starts"], vb["starts"] + 1, "volume.starts is one more")
        equal(va["moved_from"], None, "volume.moved_from is null: the same hands")
        equal(va["recent"][-1], {"pod": name, "at": after["started_at"]},
              "volume.recent ends with this start")
        equal(va["recent"][:-1], vb["recent"][len(vb["recent"]) + 1 - len(va["recent"]):],
              "the starts before it are the ones /info listed before the delete")
        summary = (f"created by {va['created']['pod']} at {va['created']['at']}; {va['starts']} "
                   f"starts, the last by {name} at {after['started_at']}")
        equal(va["summary"], summary, "volume.summary says so in one line")
        equal(self.volume_line(name), summary, f"{name}'s / shows that line as its volume line")

        # Two pods on each other's volume.
        a, b = sorted(self.c.pods)[-2:]
        asker = self.c.pods[min(self.c.pods)]
        pods = {a: self.app.pod_name(a), b: self.app.pod_name(b)}
        old = {i: self.info(pods[i]) for i in (a, b)}
        data = {i: self.c.file_bytes(i) for i in (a, b)}
        changed = re.search(r"ends its volume line with `(CHANGED HANDS: last used by )(\S+)"
                            r"( \(started )<time>(\))`", readme_text())
        mark = re.search(r"marks that pod:\s+`- \S+: (\(volume changed hands: last used by )"
                         r"(\S+)(\)) \.\.\.`", readme_text())
        if not changed or not mark:
            raise Failed("the README no longer shows the changed-hands line of / or /cluster")
        self.swap_volumes(a, b)
        for i, j in ((a, b), (b, a)):
            name, other, last = pods[i], pods[j], old[j]["started_at"]
            logs = subprocess.run(["podman", "logs", self.c.pods[i].ctr], capture_output=True,
                                  text=True)
            warning = (f"this volume was last used by pod {other} (started {last}), not by "
                       f"{name}: a StatefulSet gives each pod a volume of its own, and this one "
                       "changed hands")
            expect(any("WARN" in ln and warning in ln
                       for ln in (logs.stdout + logs.stderr).splitlines()),
                   f"{name}'s log warns at start: {warning!r}", logs.stdout + logs.stderr)
            info = self.info(name)
            self.check_info_shape(info, f"{name}'s /info on {other}'s volume", moved=True)
            equal(info["volume"]["moved_from"], {"pod": other, "at": last},
                  f"{name}'s /info: volume.moved_from names {other} and its last start")
            equal((info["volume"]["created"], info["volume"]["starts"]),
                  (old[j]["volume"]["created"], old[j]["volume"]["starts"] + 1),
                  f"{name}'s /info: the volume's creation and starts are {other}'s volume's")
            equal(self.c.proxy(name, "GET", "/data"), (200, data[j]),
                  f"{name}'s /data is what {other} stored")
            suffix = changed.group(1) + other + changed.group(3) + last + changed.group(4)
            line = self.volume_line(name)
            expect(line.endswith("; " + suffix), f"{name}'s / ends its volume line with the "
                   f"README's {suffix!r}", line)
        self.settle()
        status, page = self.c.proxy(asker.name, "GET", "/cluster")
        self.check_cluster((status, page), f"{asker.name}'s /cluster with two volumes swapped")
        for i, j in ((a, b), (b, a)):
            want = f"- {self.fqdn(i)}: {mark.group(1)}{pods[j]}{mark.group(3)} ".encode()
            expect(re.search(b"^" + re.escape(want), page, re.M),
                   f"{asker.name}'s /cluster marks {pods[i]} as the README shows: {want!r}")
        status, headers, body = request("127.0.0.1", self.c.proxy_port, "GET",
                                        self.c.proxy_path(asker.name, "/cluster"),
                                        headers={"Accept": "application/json"})
        try:
            view = json.loads(body)
            rows = {row["name"]: row for row in view["pods"]}
            moved = {pods[i]: ((rows[pods[i]]["info"] or {}).get("volume") or {}).get(
                "moved_from", {}) for i in (a, b)}
        except (ValueError, KeyError, TypeError) as err:
            raise Failed(f"/cluster as JSON from {asker.name}: {err}: {body!r}")
        equal((status, headers.get("Content-Type"), [r["name"] for r in view["pods"]],
               {n: (m or {}).get("pod") for n, m in moved.items()}),
              (200, "application/json", [self.app.pod_name(k) for k in sorted(self.c.pods)],
               {pods[a]: pods[b], pods[b]: pods[a]}),
              f"{asker.name}'s /cluster as JSON lists the pods in order, and the info of each "
              "swapped one names the other in volume.moved_from")
        # Each volume back to its pod: the data is theirs again, and the lineage says the
        # volume changed hands once more (from the pod that borrowed it).
        self.swap_volumes(a, b)
        for i, j in ((a, b), (b, a)):
            equal(self.c.proxy(pods[i], "GET", "/data"), (200, data[i]),
                  f"{pods[i]} is back on its own volume, with its own data")
            equal((self.info(pods[i])["volume"]["moved_from"] or {}).get("pod"), pods[j],
                  f"{pods[i]}'s volume says it was last used by {pods[j]}, which borrowed it")

    def s3_stable_storage(self):
        i = max(self.c.pods)
        pod = self.c.pods[i]
        self.store_proxy(pod, token("keep-me"))
        before = self.c.proxy(pod.name, "GET", "/data")
        expect(before[0] == 200 and before[1] == self.c.file_bytes(i),
               f"{pod.name} holds {len(before[1])} bytes before it is deleted")
        code, took = self.c.delete_pod(i)
        equal(code, 0, f"deleted {pod.name}: exit status after SIGTERM ({max(took, 0):.2f} s)")
        self.expect_status(self.c.proxy(pod.name, "GET", "/data"), 404, "NotFound",
                           f'pods "{pod.name}" not found',
                           f"GET .../pods/{pod.name}/proxy/data while it does not exist")

        def pending(p):
            self.expect_status(self.c.proxy(p.name, "GET", "/data"), 400, "BadRequest",
                               "address not allowed",
                               f"GET .../pods/{p.name}/proxy/data before it has an address")
        pod = self.c.create_pod(i, before_start=pending)
        log(f"{pod.name} created again with the same volume, now at {pod.ip}")
        equal(self.c.proxy(pod.name, "GET", "/data"), before,
              f"{pod.name}'s /data after the restart is byte for byte what it was")
        equal(self.c.dig("A", pod.fqdn(self.app), "+short").split(), [pod.ip],
              f"{pod.fqdn(self.app)} follows the pod to its new address")
        self.wait_get("after the restart")

    def s4_scaling(self):
        kept = {}

        def step():
            self.wait_get(f"{len(self.c.pods)} pod(s)")

        for n in (5, 2, 3):
            print(f"  -- scale to {n}")
            if n < len(self.c.pods):
                for i in range(n, len(self.c.pods)):
                    self.store_proxy(self.c.pods[i], token(f"scale-{i}"))
                    kept[i] = self.c.file_bytes(i)
            self.c.scale(n, on_step=step)
            if n == 2:
                for i, data in kept.items():
                    equal(self.c.file_bytes(i), data,
                          f"the volume of removed pod {self.app.pod_name(i)} is kept")
        for i in kept:
            if i in self.c.pods:
                equal(self.c.proxy(self.c.pods[i].name, "GET", "/data"), (200, kept[i]),
                      f"{self.c.pods[i].name} came back with its data")

    def s5_rolling_restart(self):
        acked, failed, stop = {}, [], threading.Event()
        lock = threading.Lock()
        # Bounded both ways: at most `limit` requests per thread, paced, and a deadline.
        limit, pace, deadline = 5000, 0.005, time.monotonic() + 120
        exhausted = []

        def load(t):
            for n in range(limit + 1):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                if n == limit:
                    exhausted.append(t)
                    return
                time.sleep(pace)
                body = f"L{t}-{n};"
                try:
                    st, reply = self.c.ingress("POST", "/stateful/store", body.encode(),
                                               timeout=10)
                except OSError as e:
                    st, reply = 0, str(e).encode()
                m = re.fullmatch(rb"hello from v2:(\S+)", reply)
                with lock:
                    if st == 200 and m:
                        acked[body] = m.group(1).decode()
                    else:
                        failed.append((body, st, reply[:100]))

        threads = [threading.Thread(target=load, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1)
            for i in sorted(self.c.pods, reverse=True):
                name = self.c.pods[i].name
                code, took = self.c.delete_pod(i)
                equal(code, 0, f"{name} exits 0 on SIGTERM under load")
                expect(took <= 1.0, f"{name} exited {max(took, 0):.2f} s after SIGTERM (limit 1 s)")
                self.c.create_pod(i)
                log(f"{name} back at {self.c.pods[i].ip}; {len(acked)} writes acknowledged")
            time.sleep(1)
        finally:
            stop.set()
            for t in threads:
                t.join()
        expect(not exhausted, "the load ran until every pod had been restarted",
               f"threads {exhausted} used up their {limit} requests first")
        files = {i: self.c.file_bytes(i) for i in self.c.pods}
        lost = [b for b, pod in acked.items()
                if files.get(int(pod.rsplit("-", 1)[1]), b"").count(b.encode()) != 1]
        expect(len(acked) > 0, f"{len(acked)} writes acknowledged through the ingress during the "
               f"rolling restart ({len(failed)} not acknowledged)")
        if failed:
            log(f"not acknowledged (allowed, not counted as stored): {failed[:3]}")
        expect(not lost, "every acknowledged write is exactly once in the file of the pod that "
               "acknowledged it", f"{len(lost)} missing, e.g. {lost[:5]}")
        # Every load record is whole: each "L" starts a complete L<thread>-<n>; record.
        torn = [i for i, data in files.items()
                if data.count(b"L") != len(re.findall(rb"L\d+-\d+;", data))]
        expect(not torn, "no torn or interleaved records")
        self.wait_get("after the rolling restart")

    def s6_peer_discovery_at_scale(self, total=100):
        app = self.app
        hosts = list(self.c.subnet.hosts())
        real = len(self.c.ready_pods())
        self.c.extra_endpoints = [
            (f"{app.pod_name(i)}.{app.service_name}.{app.namespace}.svc.{ZONE}.",
             str(hosts[-1 - (i - real)])) for i in range(real, total)]
        self.c.reconcile()
        log(f"{total} endpoints in the cluster DNS: {real} running pods, {total - real} as records")
        udp = self.c.dig("SRV", self.svc_fqdn, "+notcp", "+ignore", "+bufsize=1232")
        flags = re.search(r"flags: ([a-z ]+);", udp)
        expect(flags and "tc" in flags.group(1).split(),
               "over UDP (EDNS0 1232 bytes) the SRV answer is truncated (TC)",
               flags.group(1) if flags else udp)
        tcp = self.c.dig("SRV", self.svc_fqdn, "+tcp", "+short").splitlines()
        equal(len(tcp), total, "over TCP the SRV answer has every record")
        self.wait_get(f"{total} endpoints")
        self.c.extra_endpoints = []
        self.c.reconcile()
        self.wait_get("back to the running pods")

    def s7_cluster(self):
        for pod in self.c.ready_pods():
            self.store_proxy(pod, token(f"cluster-data-of-{pod.name}"))
        self.settle()
        hits = set()
        for _ in range(2 * len(self.c.ready_pods())):
            hits.add(self.check_cluster(self.c.ingress("GET", "/stateful/cluster"),
                                        "GET /stateful/cluster through the ingress"))
        log(f"answered by {sorted(hits)}")
        big = max(self.c.pods)
        self.store_proxy(self.c.pods[big], "X" * (self.cap + 1000) + "end;")
        self.check_cluster(self.c.ingress("GET", "/stateful/cluster"),
                           f"overfilled {self.c.pods[big].name} ({len(self.c.file_bytes(big))} "
                           f"bytes) is shown capped at {self.cap} bytes")
        asker = self.c.pods[0]
        stalled = self.c.pods[1]
        self.c.pause(1)
        try:
            t0 = time.monotonic()
            got = self.c.proxy(asker.name, "GET", "/cluster", timeout=30)
            took = time.monotonic() - t0
            self.check_cluster(got, f"stalled peer {stalled.name} (accepts, never answers), "
                               f"asked {asker.name}", errors=(1,))
            expect(took < self.peer_timeout + 1.5,
                   f"answered in {took:.2f} s (PEER_TIMEOUT_MS {self.peer_timeout * 1000:.0f})")
        finally:
            self.c.unpause(1)
        self.check_cluster(self.c.proxy(asker.name, "GET", "/cluster"),
                           f"{stalled.name} resumed: all peers' data again")
        dead = max(self.c.pods)
        dead_name = self.c.pods[dead].name
        data = self.c.file_bytes(dead)
        self.c.kill_pod_unnoticed(dead)
        log(f"{dead_name} killed; its endpoint stays published until the probe notices")
        t0 = time.monotonic()
        got = self.c.proxy(asker.name, "GET", "/cluster", timeout=30)
        took = time.monotonic() - t0
        self.check_cluster(got, f"stopped peer {dead_name}, asked {asker.name}", errors=(dead,))
        expect(took < self.peer_timeout + 1.5, f"answered in {took:.2f} s")
        self.check_cluster(self.c.ingress("GET", "/stateful/cluster", timeout=30),
                           f"stopped peer {dead_name}, through the ingress", errors=(dead,))
        # The window closes: the kubelet's probe finds the pod dead within its failure time.
        took = self.c.notice_dead_pod(dead)
        bound = self.c.failure_seconds() + RECONCILE_SLACK
        expect(took is not None and took <= bound,
               f"the readiness probe marks dead {dead_name} not Ready and the endpoints drop it "
               f"{'never' if took is None else f'{took:.1f} s'} after it probes again (bound "
               f"{bound:.0f} s: failureThreshold x periodSeconds + timeoutSeconds, and "
               f"{RECONCILE_SLACK:.0f} s for the endpoints)")
        self.c.forget_dead_pod(dead)
        self.c.create_pod(dead)
        equal(self.c.file_bytes(dead), data, f"{dead_name} restarted with its data")
        self.settle()
        self.check_cluster(self.c.ingress("GET", "/stateful/cluster"),
                           f"{dead_name} back: every pod's data")


def restore(cluster, replicas):
    """After a failed scenario, the declared state again (best effort) so the next scenario
    still runs: pods unpaused, their probes released and readiness enabled, a pod that is still
    not Ready after a few probes replaced, no record-only endpoints, `replicas` pods."""
    log("restoring the declared state after the failure")
    for p in list(cluster.pods.values()):
        sh("podman", "unpause", p.ctr, check=False)
        cluster.release_probes(p)
        try:
            http(p.ip, cluster.app.ready_port, "POST", "/readyz/enable", timeout=2)
        except (OSError, TypeError):
            pass  # a dead pod (or none of its address): replaced below
    cluster.extra_endpoints = []
    cluster.reconcile()
    for i, p in list(cluster.pods.items()):
        if not cluster.wait_for(lambda: p.ready, cluster.failure_seconds() + RECONCILE_SLACK):
            cluster.forget_dead_pod(i)
    cluster.scale(replicas)


def shown_bytes_cap():
    # The /cluster cap is the server's constant, not a manifest value: read it from the source.
    with open(os.path.join(REPO, "src", "cluster.rs")) as f:
        m = re.search(r"pub const SHOWN_BYTES: usize = ([\d_]+);", f.read())
    return int(m.group(1).replace("_", ""))


def server_defaults(image):
    """The server's defaults, from its own --help (so they are not written a second time)."""
    out = sh(*RUN, "--rm", image, "--help")
    return dict(re.findall(r"^\s+([A-Z_]+)\s+.*\(default (\S+)\)$", out, re.M))


def main():
    started = time.monotonic()
    objs = {comp: manifests.render(REPO, comp) for comp in manifests.COMPONENTS}
    app = manifests.App(objs["nginx"])
    routes = {}
    for comp in manifests.COMPONENTS:
        routes[comp] = manifests.ingress_routes(objs[comp], manifests.App(objs[comp]), comp)
    defaults = server_defaults(app.image)
    print(f"from the rendered manifests: StatefulSet {app.name} x{app.replicas}, image "
          f"{app.image}, headless Service {app.service_name} ports {app.svc_ports}, container "
          f"ports {app.ports}, volume {app.claim} at {app.mount_path}, user {app.uid}:{app.gid} "
          f"fsGroup {app.fs_group}, read-only root {app.read_only_root}, readiness GET "
          f"{app.ready_path} on {app.ready_port}, preStop sleep {app.pre_stop_sleep} s")
    for comp, rs in routes.items():
        print(f"  {comp}: " + "; ".join(f"{r.desc} [location {r.location}, rewrite {r.rewrite}]"
                                        for r in rs))
    work = tempfile.mkdtemp(prefix="hello-stateful-e2e.")
    cluster = Cluster(app, routes, defaults, work)
    results = []
    try:
        print(f"== start: {app.replicas} pods in order")
        try:
            cluster.start()
            cluster.scale(app.replicas)
        except (AssertionError, RuntimeError, OSError) as err:
            print(f"  FAIL: the StatefulSet did not come up: {err}")
            print("e2e: 0 passed, FAILED at start-up")
            return 1
        e = E2E(cluster)
        scenarios = [
            ("1 seed flows: the README's through the real kubectl proxy, each ingress",
             e.s1_seed_flows),
            ("2 identity: hostname, DNS name, resolver, user", e.s2_identity),
            ("8 /info: every pod's namespace, address, node and ordinal", e.s8_info),
            ("3 stable storage: delete a pod, it comes back with its data", e.s3_stable_storage),
            ("7 /cluster: every pod's data; stalled, stopped, overfilled peers", e.s7_cluster),
            ("9 out of service: readiness disabled, the README's commands, DNS, /cluster, "
             "ingress", e.s9_out_of_service),
            ("10 OrderedReady: no scale-up past a pod that is not Ready", e.s10_ordered_ready),
            ("4 scaling 3 -> 5 -> 2 -> 3 in ordinal order, volumes kept", e.s4_scaling),
            ("11 volume lineage: a pod back on its own volume, two pods on each other's",
             e.s11_lineage),
            ("5 rolling restart under load: no acknowledged write lost", e.s5_rolling_restart),
            ("6 peer discovery at scale: 100 endpoints over TCP", e.s6_peer_discovery_at_scale),
        ]
        for title, fn in scenarios:
            print(f"== scenario {title}", flush=True)
            t0 = time.monotonic()
            try:
                if cluster.extra_endpoints or sorted(cluster.pods) != list(
                        range(app.replicas)) or not all(
                        p.ready and not p.held for p in cluster.pods.values()):
                    restore(cluster, app.replicas)
                del cluster.errors[:]
                fn()
                if cluster.errors:
                    raise Failed("on the kubelet's probe threads: " + "; ".join(cluster.errors))
                results.append((title, "PASS", time.monotonic() - t0, ""))
            except (Failed, AssertionError, RuntimeError, OSError) as err:
                results.append((title, "FAIL", time.monotonic() - t0, str(err)))
                print(f"  FAIL: {err}", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("== summary")
    for title, res, took, _ in results:
        print(f"  {res}  {took:6.1f} s  {title}")
    failed = [r for r in results if r[1] != "PASS"]
    print(f"e2e: {len(results) - len(failed)} passed, {len(failed)} failed, "
          f"{time.monotonic() - started:.0f} s")
    return 1 if failed or not results else 0


if __name__ == "__main__":
    # A process group of its own: what the harness starts stays in it, so the run script can end
    # whatever is left if the harness is killed before its own cleanup.
    os.setpgid(0, 0)
    # SIGTERM (CI timeout, Ctrl-C from make) unwinds through the cleanup above.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main())
    except manifests.ManifestError as err:
        print(f"e2e: FAILED: the manifests: {err}")
        sys.exit(1)
