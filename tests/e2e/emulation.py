"""The StatefulSet on one machine: pods as podman containers, a cluster DNS, an ingress and the
real `kubectl proxy`, all driven from the rendered manifests (manifests.py).

- Pods: the real image on a private podman bridge network, one container per replica, with the
  pod's hostname, resolver config (search list, ndots:5, the cluster DNS), user, fsGroup,
  read-only root and a volume directory per replica (the PVC) at the manifest's mount path.
- Cluster DNS: dnsmasq on the network's gateway, answering for the zone only what CoreDNS
  answers for a headless Service: SRV for the name and its `_<port>._tcp.` form, the Service's A
  records, an A record per pod, for ready pods only (none: NXDOMAIN), TTL 5 s. dnsmasq reads
  srv-host only at start, so each change restarts it.
- Pod fields: the downward API's env entries (fieldRef) get the pod's name, the namespace of the
  manifests, the address the pod is started with (chosen before the start, each given out once)
  and the emulation's one node, NODE.
- Readiness: the kubelet's httpGet readinessProbe, probed all the pod's life on a thread per pod
  with the manifest's path, (named) port, initialDelaySeconds, periodSeconds, timeoutSeconds,
  failureThreshold and successThreshold; each change of a pod's readiness updates DNS and the
  ingress at once, as the endpoints controller would. A deleted pod leaves them at once,
  whatever its probe says. A scenario may hold a pod's probe (hold_probes) to look at the
  window before the kubelet notices a hung or dead pod without racing it. The livenessProbe is
  not emulated: no container is restarted by it.
- StatefulSet controller: OrderedReady scaling, one pod at a time, each step only once every pod
  below the one it creates or deletes is Running and Ready.
- Ingress: one nginx with a server per ingress component (ingress-nginx regex + rewrite-target,
  Traefik stripPrefixRegex, HTTPRoute ReplacePrefixMatch), upstreams the ready pods' endpoints.
- API server: `kubectl proxy` itself, in front of the API-server stand-in of apiserver.py, whose
  pod proxy knows the pods as the API server would: a pod exists from its creation (without an
  address until its container has one) until its deletion, ready or not.
"""

import ctypes
import ipaddress
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import http.client as httpclient

from apiserver import ApiServer, KubectlProxy

ZONE = "cluster.local"
DNS_TTL = 5  # CoreDNS's default TTL
# The one node every pod of the emulation runs on (this machine): spec.nodeName of each pod.
NODE = "e2e-node"


def log(msg):
    print(f"  . {msg}", flush=True)


def sh(*args, check=True, timeout=120, input=None):
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, input=input)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: exit {out.returncode}: {out.stderr.strip()}")
    return out.stdout


PODMAN = ["podman"]
RUN = ["podman", "--runtime", "runc", "run", "--ulimit", "nofile=1024:1024",
       "--ulimit", "nproc=1024:1024"]


def _die_with_parent():
    # PR_SET_PDEATHSIG: dnsmasq, nginx and kubectl proxy get SIGTERM if the harness dies without
    # cleaning up (the run script also ends what is left in the harness's process group).
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(host, port, method, path, body=None, timeout=10, headers=None):
    """(status, headers, body bytes) of one request; raises OSError on connection problems."""
    c = httpclient.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r.status, r.headers, r.read()
    finally:
        c.close()


def http(host, port, method, path, body=None, timeout=10, headers=None):
    """(status, body bytes) of one request; raises OSError on connection problems."""
    status, _, data = request(host, port, method, path, body, timeout, headers)
    return status, data


class Pod:
    def __init__(self, cluster, i):
        self.i, self.name = i, cluster.app.pod_name(i)
        self.ctr = f"{cluster.prefix}-{self.name}"
        self.ip = None
        # The kubelet's verdict from the readiness probe: what the endpoints follow.
        self.ready = False
        # Deleted and shutting down: out of the endpoints whatever its probe says.
        self.terminating = False
        # While held, probe results are set aside (Cluster.hold_probes); the epoch changes at
        # each hold and release, so a probe begun before either is set aside too.
        self.held = False
        self.hold_epoch = 0
        self.readiness_changed_at = None  # time.monotonic() of the last change of `ready`
        self.prober = None
        self.created_at = time.monotonic()

    def fqdn(self, app):
        return f"{self.name}.{app.service_name}.{app.namespace}.svc.{ZONE}."


class Prober:
    """The kubelet's readiness probe worker for one pod's container, on a thread of its own:
    initialDelaySeconds after the start, then every periodSeconds (a ticker: a slow probe does
    not shift the next), an HTTP GET of the probe's path and port on the pod's address within
    timeoutSeconds. A status from 200 to 399 is a success; any other, a refused connection or
    a timeout is a failure. The pod starts not Ready, becomes Ready after successThreshold
    successes in a row and not Ready after failureThreshold failures in a row, and keeps what
    it was in between. Each change goes to the endpoints at once (Cluster.readiness_changed),
    as the endpoints controller would carry it."""

    def __init__(self, cluster, pod):
        self.cluster, self.pod = cluster, pod
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, name=f"probe {pod.name}", daemon=True)
        self.thread.start()

    def stop(self):
        self.stopped.set()
        self.thread.join(self.cluster.app.ready_timeout + 15)

    def run(self):
        c, app, pod = self.cluster, self.cluster.app, self.pod
        last, run = None, 0  # the last result applied, and how many in a row
        next_at = time.monotonic() + app.ready_delay
        while not self.stopped.wait(max(0.0, next_at - time.monotonic())):
            now = time.monotonic()
            while next_at <= now:
                next_at += app.ready_period  # ticks missed while busy are dropped
            with c.lock:
                if pod.held or pod.terminating:
                    continue
                epoch = pod.hold_epoch
            result = c.probe(pod)
            with c.lock:
                if self.stopped.is_set() or pod.terminating or pod.held or pod.hold_epoch != epoch:
                    continue
                run = run + 1 if result == last else 1
                last = result
                if pod.ready != result and run >= (app.ready_successes if result
                                                   else app.ready_failures):
                    c.readiness_changed(pod, result, run)


class Cluster:
    def __init__(self, app, routes, server_defaults, workdir):
        self.app, self.routes, self.defaults = app, routes, server_defaults
        self.prefix = f"e2e{os.getpid()}"
        self.work = workdir
        self.volumes = os.path.join(workdir, "volumes")
        os.makedirs(self.volumes)
        self.pods = {}  # ordinal -> Pod, the pods that exist (running or starting)
        self.extra_endpoints = []  # (fqdn, ip): endpoints that exist only as DNS records
        self.network = None
        self.dnsmasq = None
        self.nginx = None
        self.api = None
        self.kubectl = None
        self.generation = 0
        self.cleanups = []
        # The pods, their readiness and the endpoints change from the probe threads and the
        # scenario's thread: each change is made under this lock, and `changed` is notified
        # after it, so waiting for a state is waiting on a condition, with a deadline.
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        # What went wrong on a probe thread (a reconcile that failed): reported by the harness.
        self.errors = []

    # ---------- setup and teardown ----------

    def start(self):
        self.network = f"{self.prefix}-net"
        sh(*PODMAN, "network", "create", "--disable-dns", self.network)
        self.cleanups.append(lambda: sh(*PODMAN, "network", "rm", "-f", self.network, check=False))
        info = sh(*PODMAN, "network", "inspect", self.network, "--format",
                  "{{range .Subnets}}{{.Subnet}} {{.Gateway}}{{end}}").split()
        self.subnet, self.gateway = ipaddress.ip_network(info[0]), info[1]
        # Pod addresses, each given out once, from the bottom of the subnet: a pod created
        # again gets a new address, as a pod does in a cluster (and the host's neighbour table
        # never holds a stale MAC for a reused one).
        self.addresses = (str(h) for h in self.subnet.hosts() if str(h) != self.gateway)
        log(f"podman network {self.network}: {self.subnet}, cluster DNS on {self.gateway}")
        self.ports = {c: free_port() for c in self.routes}
        self.api = ApiServer(self.pod_address, os.path.join(self.work, "apiserver.log"))
        self.kubectl = KubectlProxy(self.api.url, self.work, preexec_fn=_die_with_parent)
        self.proxy_port = self.kubectl.port
        log(f"kubectl proxy on 127.0.0.1:{self.proxy_port}, its API server on {self.api.url}")
        self.reconcile()

    def stop(self):
        for pod in list(self.pods.values()):
            if pod.prober:
                pod.prober.stop()
        for pod in list(self.pods.values()):
            sh(*PODMAN, "rm", "-f", "-t", "0", pod.ctr, check=False)
        if self.kubectl:
            self.kubectl.stop()
        if self.api:
            self.api.stop()
        for p in (self.nginx, self.dnsmasq):
            if p and p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        for c in reversed(self.cleanups):
            c()

    # ---------- pods ----------

    def volume(self, i):
        # A PVC is named <claim template>-<statefulset>-<ordinal>.
        return os.path.join(self.volumes, f"{self.app.claim}-{self.app.name}-{i}")

    def data_file_on_host(self, i):
        """The pod's data file as seen on its volume (DATA_FILE must be on the volume)."""
        data_file = self.app.env.get("DATA_FILE", self.defaults["DATA_FILE"])
        rel = os.path.relpath(data_file, self.app.mount_path)
        if rel.startswith(".."):
            return None
        return os.path.join(self.volume(i), rel)

    def file_bytes(self, i):
        path = self.data_file_on_host(i)
        if path is None or not os.path.exists(path):
            return b""
        with open(path, "rb") as f:
            return f.read()

    def pod_address(self, namespace, name):
        """For the API server's pod proxy: (ip or None, first container port), None: no pod."""
        if namespace != self.app.namespace:
            return None
        pod = next((p for p in list(self.pods.values()) if p.name == name), None)
        return None if pod is None else (pod.ip, self.app.proxy_port)

    def pod_fields(self, pod, ip):
        """The downward API's pod fields (manifests.POD_FIELDS) for a pod at address `ip`."""
        return {"metadata.name": pod.name, "metadata.namespace": self.app.namespace,
                "status.podIP": ip, "spec.nodeName": NODE}

    def create_pod(self, i, wait_ready=True, before_start=None):
        """Start pod i with its volume (created on first use, as a PVC is) and wait until ready.
        The pod exists from the start, without an address until its container runs:
        `before_start(pod)` runs in that window."""
        app = self.app
        pod = Pod(self, i)
        with self.lock:
            self.pods[i] = pod
            self.changed.notify_all()
        if before_start:
            before_start(pod)
        vol = self.volume(i)
        if not os.path.exists(vol):
            os.makedirs(vol)
            # What the kubelet does with fsGroup: the volume's group, setgid, group-writable.
            if app.fs_group is not None:
                os.chown(vol, 0, app.fs_group)
                os.chmod(vol, 0o2775)
            else:
                os.chmod(vol, 0o755)
        args = RUN + ["-d", "--name", pod.ctr, "--network", self.network,
                      "--hostname", pod.name, "--dns", self.gateway,
                      "--dns-search", f"{app.namespace}.svc.{ZONE}",
                      "--dns-search", f"svc.{ZONE}", "--dns-search", ZONE,
                      "--dns-option", "ndots:5", "-v", f"{vol}:{app.mount_path}"]
        if app.uid is not None:
            args += ["--user", f"{app.uid}:{app.gid if app.gid is not None else app.uid}"]
        if app.fs_group is not None:
            args += ["--group-add", str(app.fs_group)]
        if app.read_only_root:
            args.append("--read-only")
        if app.drop_all_caps:
            args += ["--cap-drop", "all"]
        if app.no_new_privs:
            args += ["--security-opt", "no-new-privileges"]
        # The pod's address is chosen before its container starts, as the network plugin
        # chooses it before the kubelet starts the containers: status.podIP is known to them.
        ip = next(self.addresses, None)
        if ip is None:
            raise RuntimeError(f"no pod address left in {self.subnet}")
        args += ["--ip", ip]
        fields = self.pod_fields(pod, ip)
        for k, v in list(app.env.items()) + [(k, fields[f]) for k, f in app.field_env.items()]:
            args += ["-e", f"{k}={v}"]
        args.append(app.image)
        sh(*args)
        got = sh(*PODMAN, "inspect", pod.ctr, "--format",
                 f'{{{{(index .NetworkSettings.Networks "{self.network}").IPAddress}}}}').strip()
        if got != ip:
            raise RuntimeError(f"{pod.name} was started with --ip {ip} but podman gave it {got}")
        with self.lock:
            pod.ip = ip
        pod.prober = Prober(self, pod)
        if wait_ready:
            self.wait_ready(pod)
        return pod

    def probe(self, pod):
        """One readinessProbe: httpGet on the manifest's path and port, within its timeout."""
        app = self.app
        if app.ready_port is None:
            return False  # a port name the container does not have: the probe always fails
        headers = {"User-Agent": "kube-probe/1.32", **app.ready_headers}
        try:
            status, _ = http(pod.ip, app.ready_port, "GET", app.ready_path,
                             timeout=app.ready_timeout, headers=headers)
            return 200 <= status < 400
        except (OSError, httpclient.HTTPException):
            return False

    def readiness_changed(self, pod, ready, run):
        """The kubelet's new verdict on a pod (called under the lock): the endpoints, DNS and
        the ingress, follow it at once."""
        first = pod.readiness_changed_at is None
        pod.ready = ready
        pod.readiness_changed_at = time.monotonic()
        if not first:
            log(f"kubelet: {pod.name} {'Ready' if ready else 'not Ready'} after {run} "
                f"{'successful' if ready else 'failed'} probe(s) in a row")
        try:
            self.reconcile()
        except (RuntimeError, OSError, subprocess.SubprocessError) as err:
            self.errors.append(f"endpoints after {pod.name} became "
                               f"{'Ready' if ready else 'not Ready'}: {err}")
        self.changed.notify_all()

    def wait_for(self, predicate, timeout):
        """Whether predicate() (called under the lock) holds within `timeout` seconds."""
        with self.changed:
            return self.changed.wait_for(predicate, timeout)

    def hold_probes(self, pod):
        """Set the pod's probe results aside until release_probes: a window the kubelet has
        not noticed yet, held open so a check made in it cannot race the probe."""
        with self.lock:
            pod.held = True
            pod.hold_epoch += 1

    def release_probes(self, pod):
        with self.lock:
            pod.held = False
            pod.hold_epoch += 1

    def failure_seconds(self):
        """The longest a Ready pod that stops passing its probe stays Ready: its next probe
        comes within a period, and the failureThreshold-th failed one in a row ends at most a
        timeout after it began."""
        app = self.app
        return app.ready_failures * app.ready_period + app.ready_timeout

    def wait_ready(self, pod, deadline_s=20):
        end = time.monotonic() + deadline_s
        while True:
            left = end - time.monotonic()
            if self.wait_for(lambda: pod.ready, max(0.0, min(left, 0.5))):
                return
            if left <= 0:
                break
            state = sh(*PODMAN, "inspect", pod.ctr, "--format", "{{.State.Status}}").strip()
            if state not in ("running", "created", "configured"):
                break
        state = sh(*PODMAN, "inspect", pod.ctr, "--format",
                   "{{.State.Status}} (exit code {{.State.ExitCode}})", check=False).strip()
        logs = subprocess.run(PODMAN + ["logs", pod.ctr], capture_output=True, text=True)
        raise AssertionError(
            f"{pod.name} never became ready within {deadline_s} s (readinessProbe GET "
            f"{self.app.ready_path} on port {self.app.ready_port}); container {state}; "
            f"logs: {(logs.stdout + logs.stderr).strip()}")

    def delete_pod(self, i):
        """Delete pod i as the kubelet does: out of the endpoints, preStop, SIGTERM, wait.

        Returns (exit code, seconds from SIGTERM to exit)."""
        pod = self.pods[i]
        with self.lock:
            pod.terminating = True
            pod.ready = False
            self.reconcile()  # a terminating pod leaves the endpoints at once
        if pod.prober:
            pod.prober.stop()
        if self.app.pre_stop_sleep:
            time.sleep(self.app.pre_stop_sleep)
        pid = int(sh(*PODMAN, "inspect", pod.ctr, "--format", "{{.State.Pid}}").strip())
        t0 = time.time()
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + self.app.grace_seconds
        while time.monotonic() < end:
            st = sh(*PODMAN, "inspect", pod.ctr, "--format", "{{.State.Status}}").strip()
            if st in ("exited", "stopped"):
                break
            time.sleep(0.05)
        else:
            sh(*PODMAN, "kill", "--signal", "KILL", pod.ctr, check=False)
            sh(*PODMAN, "wait", pod.ctr, check=False)
        out = sh(*PODMAN, "inspect", pod.ctr, "--format",
                 "{{.State.ExitCode}} {{.State.FinishedAt.UnixNano}}").split()
        code, took = int(out[0]), int(out[1]) / 1e9 - t0
        sh(*PODMAN, "rm", "-f", pod.ctr)
        with self.lock:
            del self.pods[i]
            self.changed.notify_all()
        return code, took

    def kill_pod_unnoticed(self, i):
        """The pod dies (SIGKILL) but its endpoint is still published: the window before the
        kubelet's readiness probe notices, held open until notice_dead_pod."""
        self.hold_probes(self.pods[i])
        sh(*PODMAN, "kill", "--signal", "KILL", self.pods[i].ctr)
        sh(*PODMAN, "wait", self.pods[i].ctr, check=False)

    def notice_dead_pod(self, i):
        """Ends the window kill_pod_unnoticed held open: the probe runs again. Returns the
        seconds until the kubelet has marked the pod not Ready and the endpoints have dropped
        it, or None when that takes longer than twice failure_seconds."""
        pod = self.pods[i]
        t0 = time.monotonic()
        self.release_probes(pod)
        if not self.wait_for(lambda: not pod.ready, 2 * self.failure_seconds()):
            return None
        return time.monotonic() - t0

    def forget_dead_pod(self, i):
        """The pod is gone from the cluster: out of the endpoints; the container is removed."""
        pod = self.pods[i]
        if pod.prober:
            pod.prober.stop()
        with self.lock:
            del self.pods[i]
            pod.ready = False
            self.reconcile()
            self.changed.notify_all()
        sh(*PODMAN, "rm", "-f", pod.ctr, check=False)

    def pause(self, i):
        """Freezes pod i (it takes connections and never answers), its probe held meanwhile:
        the window before the kubelet notices, kept open while a check looks at it."""
        self.hold_probes(self.pods[i])
        sh(*PODMAN, "pause", self.pods[i].ctr)

    def unpause(self, i):
        sh(*PODMAN, "unpause", self.pods[i].ctr)
        self.release_probes(self.pods[i])

    def ready_pods(self):
        with self.lock:
            return [self.pods[i] for i in sorted(self.pods)
                    if self.pods[i].ready and not self.pods[i].terminating]

    def scale(self, n, on_step=None, deadline_s=60):
        """The StatefulSet controller scaling to n pods with OrderedReady: it creates the
        missing ordinals below n from the lowest up, then deletes those from n up from the
        highest down, one pod at a time; before each step it waits until every pod below the
        one it creates or deletes is Running and Ready (failing after deadline_s), and a pod
        it creates is Ready before the next step."""
        while True:
            with self.lock:
                missing = [k for k in range(n) if k not in self.pods]
                extra = sorted(k for k in self.pods if k >= n)
            if not missing and not extra:
                return
            i = missing[0] if missing else extra[-1]
            verb = "create" if missing else "delete"
            self.wait_predecessors(i, verb, deadline_s)
            if missing:
                self.create_pod(i)
                log(f"created {self.pods[i].name} ({self.pods[i].ip}), ready")
            else:
                name = self.pods[i].name
                code, took = self.delete_pod(i)
                log(f"deleted {name}: exit {code} {max(took, 0):.2f} s after SIGTERM; volume kept")
            if on_step:
                on_step()

    def wait_predecessors(self, i, verb, deadline_s):
        """OrderedReady: waits until every pod below ordinal i is Running and Ready."""
        name = self.app.pod_name(i)

        def waiting():
            return [p.name for k, p in sorted(self.pods.items())
                    if k < i and (not p.ready or p.terminating)]

        with self.changed:
            if not waiting():
                return
            log(f"StatefulSet controller: {', '.join(waiting())} not Ready, so {name} is not "
                f"{verb}d until it is (OrderedReady)")
            if not self.changed.wait_for(lambda: not waiting(), deadline_s):
                raise RuntimeError(f"the StatefulSet waited {deadline_s} s to {verb} {name}: "
                                   f"{', '.join(waiting())} never became Ready")
        log(f"StatefulSet controller: every pod below {name} Ready: {verb} it")

    # ---------- endpoints: DNS and ingress ----------

    def endpoints(self):
        """(fqdn, ip) of every ready endpoint, real pods and record-only ones."""
        with self.lock:
            return [(p.fqdn(self.app), p.ip) for p in self.ready_pods()] + self.extra_endpoints

    def reconcile(self):
        """The endpoints controller and the cluster DNS: the ready endpoints into dnsmasq and
        the ingress's upstreams, done when both answer with the new state."""
        with self.lock:
            self.generation += 1
            self.changed_at = time.monotonic()
            self.write_dns()
            self.write_nginx()

    def write_dns(self):
        app = self.app
        svc = f"{app.service_name}.{app.namespace}.svc.{ZONE}"
        eps = list(self.endpoints())
        random.shuffle(eps)  # CoreDNS's order is not sorted; the server must sort
        lines = [f'txt-record=e2e-generation.{ZONE},"{self.generation}"']
        n = len(eps)
        for name, port, pod_port in app.svc_ports:
            if pod_port is None:
                continue  # targetPort names no container port: no endpoints
            for fqdn, ip in eps:
                target = fqdn.rstrip(".")
                weight = 100 // n
                lines.append(f"srv-host={svc},{target},{pod_port},0,{weight}")
                if name:
                    lines.append(f"srv-host=_{name}._tcp.{svc},{target},{pod_port},0,{weight}")
        if any(p[2] is not None for p in app.svc_ports):
            for fqdn, ip in eps:
                lines.append(f"host-record={fqdn.rstrip('.')},{ip}")
                lines.append(f"host-record={svc},{ip}")
        conf = os.path.join(self.work, "dnsmasq.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        if self.dnsmasq and self.dnsmasq.poll() is None:
            self.dnsmasq.terminate()
            self.dnsmasq.wait(5)
        self.dnsmasq = subprocess.Popen(
            ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}", "--no-resolv",
             "--no-hosts", "--no-poll", f"--listen-address={self.gateway}", "--bind-dynamic",
             "--except-interface=lo", f"--local=/{ZONE}/", f"--local-ttl={DNS_TTL}",
             "--pid-file=", "--log-facility=" + os.path.join(self.work, "dnsmasq.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        if not self.gateway_up():
            return  # bind-dynamic: dnsmasq binds once the first pod brings the bridge up
        end = time.monotonic() + 10
        while time.monotonic() < end:
            got = subprocess.run(["dig", f"@{self.gateway}", "+short", "+time=1", "+tries=1",
                                  "TXT", f"e2e-generation.{ZONE}"],
                                 capture_output=True, text=True).stdout.strip()
            if got == f'"{self.generation}"':
                return
            if self.dnsmasq.poll() is not None:
                raise RuntimeError(f"dnsmasq exited: {self.dnsmasq.stderr.read().decode()}")
            time.sleep(0.05)
        raise RuntimeError("dnsmasq did not answer within 10 s")

    def gateway_up(self):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            try:
                s.bind((self.gateway, 0))
                return True
            except OSError:
                return False

    def write_nginx(self):
        app = self.app
        t = self.work
        for d in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(t, "nginx", d), exist_ok=True)
        upstreams, servers = [], []
        ready = self.ready_pods()
        for name, port, pod_port in app.svc_ports:
            if pod_port is not None and ready:
                upstreams.append(f"upstream svc_{port} {{\n" + "".join(
                    f"  server {p.ip}:{pod_port} max_fails=1 fail_timeout=10s;\n"
                    for p in ready) + "}\n")
        gen = f'  location = /__e2e_generation {{ return 200 "{self.generation}"; }}\n'
        for comp, routes in self.routes.items():
            locs = []
            for r in routes:
                body = []
                if r.body_size:
                    body.append(f"client_max_body_size {r.body_size};")
                if r.backend and r.backend[2] is not None and ready:
                    if r.rewrite:
                        body.append(f'rewrite "{r.rewrite[0]}" "{r.rewrite[1]}" break;')
                    body.append(f"proxy_pass http://svc_{r.backend[1]};")
                else:
                    # A backend without endpoints: ingress-nginx answers 503.
                    body.append('return 503 "no endpoints\\n";')
                locs.append(f"  location {r.location} {{\n    " + "\n    ".join(body) + "\n  }\n")
            servers.append(
                f"server {{\n  listen 127.0.0.1:{self.ports[comp]};\n{gen}" + "".join(locs) +
                '  location / { return 404 "default backend - 404\\n"; }\n}\n')
        conf = f"""
worker_processes 1;
daemon off;
user root root;
pid {t}/nginx.pid;
error_log {t}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log {t}/nginx-access.log;
  client_body_temp_path {t}/nginx/client_body;
  proxy_temp_path {t}/nginx/proxy;
  fastcgi_temp_path {t}/nginx/fastcgi;
  uwsgi_temp_path {t}/nginx/uwsgi;
  scgi_temp_path {t}/nginx/scgi;
  # ingress-nginx's defaults.
  proxy_http_version 1.1;
  proxy_connect_timeout 5s;
  proxy_send_timeout 60s;
  proxy_read_timeout 60s;
  proxy_next_upstream error timeout;
  client_max_body_size 1m;
{''.join(upstreams)}{''.join(servers)}}}
"""
        path = os.path.join(t, "nginx.conf")
        with open(path, "w") as f:
            f.write(conf)
        test = subprocess.run(["nginx", "-t", "-q", "-c", path, "-e", f"{t}/nginx-error.log"],
                              capture_output=True, text=True)
        if test.returncode != 0:
            raise RuntimeError(f"nginx config rejected: {test.stderr.strip()}\n{conf}")
        if self.nginx is None or self.nginx.poll() is not None:
            self.nginx = subprocess.Popen(["nginx", "-c", path, "-e", f"{t}/nginx-error.log"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          preexec_fn=_die_with_parent)
        else:
            self.nginx.send_signal(signal.SIGHUP)
        # Wait until the old workers are gone (until then they may still accept connections
        # with the old configuration) and every server answers with the new generation.
        end = time.monotonic() + 10
        for port in self.ports.values():
            while True:
                try:
                    st, body = http("127.0.0.1", port, "GET", "/__e2e_generation", timeout=1)
                    if st == 200 and body.decode() == str(self.generation):
                        break
                except OSError:
                    pass
                if self.nginx.poll() is not None:
                    raise RuntimeError(f"nginx exited: {self.nginx.stderr.read().decode()}")
                if time.monotonic() > end:
                    raise RuntimeError("nginx did not load its new configuration within 10 s")
                time.sleep(0.02)
        while len(sh("pgrep", "-P", str(self.nginx.pid), check=False).split()) != 1:
            if time.monotonic() > end:
                raise RuntimeError("nginx's old workers did not exit within 10 s")
            time.sleep(0.02)

    # ---------- clients ----------

    def ingress(self, method, path, body=None, comp="nginx", timeout=10):
        return http("127.0.0.1", self.ports[comp], method, path, body, timeout)

    def proxy_path(self, pod_name, path):
        return f"/api/v1/namespaces/{self.app.namespace}/pods/{pod_name}/proxy{path}"

    def proxy(self, pod_name, method, path, body=None, timeout=10):
        """(status, body) of a request to the pod through `kubectl proxy`."""
        return http("127.0.0.1", self.proxy_port, method, self.proxy_path(pod_name, path), body,
                    timeout)

    def proxy_full(self, pod_name, method, path, body=None, timeout=10):
        """(status, headers, body) of a request to the pod through `kubectl proxy`."""
        return request("127.0.0.1", self.proxy_port, method, self.proxy_path(pod_name, path),
                       body, timeout)

    def dig(self, qtype, name, *opts):
        return subprocess.run(["dig", f"@{self.gateway}", "+time=2", "+tries=1", *opts,
                               qtype, name], capture_output=True, text=True).stdout
