#!/usr/bin/env python3
"""The project's own policy for the rendered manifests, beyond what their schemas require.

A headless Service with the named port; an OrderedReady StatefulSet that keeps its volumes on
delete and scale-down; the restricted Pod Security Standard (non-root numeric user and fsGroup,
read-only root, no privilege escalation, all capabilities dropped, RuntimeDefault seccomp, no
service-account token); probes on /healthz and /readyz; cpu and memory requests and a memory
limit; the data volume and its storage class; a PodDisruptionBudget of maxUnavailable 1; one
label on every object; the ingress rule of the chosen controller; and, with MONITORING=podmonitor,
a PodMonitor scraping /metrics on each pod's named port at a sensible interval. Fails (exit 1, one line
per violation) when any of these is missing or wrong. The rewrite rules are executed on sample
paths, so a rule that is present but wrong is caught too.

usage: policy.py --ingress nginx|traefik|gateway|none [--monitoring none|podmonitor]
                 [--namespace NS] [--storage-class SC] RENDERED.yaml
"""

import argparse
import re
import sys
from pathlib import Path

import yaml

APP = {"app.kubernetes.io/name": "hello-stateful"}
SERVICE = "hello-stateful-service"
MOUNT = "/etc/stateful"
UID = 65532
# Request path through the ingress -> path the pod must see (None: must not be routed there
# with a rewrite, i.e. reach the pod unchanged or not at all).
REWRITES = {
    "/stateful/store": "/store",
    "/stateful/get": "/get",
    "/stateful/": "/",
    "/stateful": "/",
    "/stateful/data/x": "/data/x",
}


def parse_quantity_bytes(text):
    units = {"k": 1000, "m": 1000**2, "g": 1000**3, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
    match = re.fullmatch(r"(\d+)([A-Za-z]*)", str(text))
    if not match or (match.group(2) and match.group(2) not in units):
        return None
    return int(match.group(1)) * units.get(match.group(2), 1)


def duration_seconds(text):
    """A Prometheus duration (30s, 1m30s, 500ms) in seconds; None if it is not one."""
    units = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
    if not re.fullmatch(r"(\d+(ms|[ywdhms]))+", str(text)):
        return None
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)(ms|[ywdhms])", str(text)))


def nginx_size_bytes(text):
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", str(text))
    if not match:
        return None
    return int(match.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[match.group(2).lower()]


class Policy:
    def __init__(self, docs, ingress, namespace, storage_class, monitoring):
        self.docs = docs
        self.ingress = ingress
        self.monitoring = monitoring
        self.namespace = namespace
        self.storage_class = storage_class
        self.errors = []

    def require(self, condition, message):
        if not condition:
            self.errors.append(message)
        return condition

    def find(self, kind, name=None):
        found = [
            d for d in self.docs
            if d.get("kind") == kind and (name is None or d["metadata"].get("name") == name)
        ]
        return found

    def one(self, kind, name):
        found = self.find(kind, name)
        self.require(len(found) == 1, f"{kind}/{name}: expected exactly one, found {len(found)}")
        return found[0] if len(found) == 1 else None

    def run(self):
        for doc in self.docs:
            meta = doc.get("metadata", {})
            what = f"{doc.get('kind')}/{meta.get('name')}"
            labels = meta.get("labels") or {}
            self.require(APP.items() <= labels.items(), f"{what}: label app.kubernetes.io/name: hello-stateful missing")
            if self.namespace is not None:
                self.require(meta.get("namespace", "default") == self.namespace,
                             f"{what}: namespace {meta.get('namespace')!r}, expected {self.namespace!r}")
        self.service()
        sts = self.one("StatefulSet", "hello-stateful")
        if sts:
            self.statefulset(sts)
        self.pdb()
        {"nginx": self.ingress_nginx, "traefik": self.ingress_traefik,
         "gateway": self.gateway, "none": self.no_ingress}[self.ingress]()
        self.podmonitor()
        return self.errors

    def service(self):
        svc = self.one("Service", SERVICE)
        if not svc:
            return
        spec = svc.get("spec", {})
        self.require(spec.get("clusterIP") == "None", f"Service/{SERVICE}: must be headless (clusterIP: None)")
        self.require(spec.get("publishNotReadyAddresses", False) is False,
                     f"Service/{SERVICE}: publishNotReadyAddresses must be false")
        self.require(spec.get("selector") == APP, f"Service/{SERVICE}: selector must be {APP}")
        ports = spec.get("ports") or []
        self.require(any(p.get("name") == "http" and p.get("port") == 8000 for p in ports),
                     f"Service/{SERVICE}: needs port 8000 named http")

    def statefulset(self, sts):
        what = "StatefulSet/hello-stateful"
        spec = sts.get("spec", {})
        self.require(spec.get("serviceName") == SERVICE, f"{what}: serviceName must be {SERVICE}")
        self.require(spec.get("podManagementPolicy", "OrderedReady") == "OrderedReady",
                     f"{what}: podManagementPolicy must be OrderedReady")
        self.require(isinstance(spec.get("replicas"), int) and spec["replicas"] >= 1, f"{what}: replicas must be set")
        self.require(spec.get("selector", {}).get("matchLabels") == APP, f"{what}: selector must be {APP}")
        retention = spec.get("persistentVolumeClaimRetentionPolicy") or {}
        self.require(retention.get("whenDeleted") == "Retain" and retention.get("whenScaled") == "Retain",
                     f"{what}: persistentVolumeClaimRetentionPolicy must Retain on delete and scale")
        template = spec.get("template", {})
        self.require(APP.items() <= (template.get("metadata", {}).get("labels") or {}).items(),
                     f"{what}: pod template lacks label {APP}")
        pod = template.get("spec", {})
        self.pod(what, pod)
        claims = spec.get("volumeClaimTemplates") or []
        data = [c for c in claims if c.get("metadata", {}).get("name") == "data"]
        if self.require(len(data) == 1, f"{what}: needs volumeClaimTemplate data"):
            claim = data[0].get("spec", {})
            self.require(claim.get("accessModes") == ["ReadWriteOnce"], f"{what}: data must be ReadWriteOnce")
            self.require(claim.get("storageClassName") == self.storage_class,
                         f"{what}: storageClassName is {claim.get('storageClassName')!r}, expected "
                         f"{self.storage_class!r} (unset = the cluster default)")
            self.require(parse_quantity_bytes(claim.get("resources", {}).get("requests", {}).get("storage", "")),
                         f"{what}: data needs a storage request")

    def pod(self, what, pod):
        self.require(pod.get("automountServiceAccountToken") is False, f"{what}: automountServiceAccountToken must be false")
        self.require(pod.get("enableServiceLinks") is False, f"{what}: enableServiceLinks must be false")
        grace = pod.get("terminationGracePeriodSeconds")
        self.require(isinstance(grace, int) and 2 <= grace <= 60,
                     f"{what}: terminationGracePeriodSeconds must be set (2..60)")
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            self.require(not pod.get(field), f"{what}: {field} must not be set")
        for volume in pod.get("volumes") or []:
            self.require("hostPath" not in volume, f"{what}: hostPath volume {volume.get('name')} is not allowed")
        psc = pod.get("securityContext") or {}
        self.require(psc.get("runAsNonRoot") is True, f"{what}: pod runAsNonRoot must be true")
        self.require(psc.get("runAsUser") == UID, f"{what}: pod runAsUser must be {UID}")
        self.require(psc.get("runAsGroup") == UID, f"{what}: pod runAsGroup must be {UID}")
        self.require(psc.get("fsGroup") == UID, f"{what}: pod fsGroup must be {UID} (volume writable by the server)")
        self.require((psc.get("seccompProfile") or {}).get("type") == "RuntimeDefault",
                     f"{what}: pod seccompProfile must be RuntimeDefault")
        containers = pod.get("containers") or []
        self.require(len(containers) == 1, f"{what}: expected one container")
        self.require(not pod.get("initContainers"), f"{what}: no init containers expected")
        for c in containers:
            self.container(f"{what} container {c.get('name')}", c, psc)

    def container(self, what, c, psc):
        image = c.get("image", "")
        self.require(re.fullmatch(r"[^@\s]+:[A-Za-z0-9_][A-Za-z0-9_.-]*", image or "") and not image.endswith(":latest"),
                     f"{what}: image {image!r} needs an explicit, non-latest tag")
        self.require(c.get("imagePullPolicy") == "IfNotPresent", f"{what}: imagePullPolicy must be IfNotPresent")
        self.require(any(p.get("name") == "http" and p.get("containerPort") == 8000 for p in c.get("ports") or []),
                     f"{what}: needs containerPort 8000 named http")
        self.require(any(m.get("name") == "data" and m.get("mountPath") == MOUNT for m in c.get("volumeMounts") or []),
                     f"{what}: volume data must be mounted at {MOUNT}")
        csc = c.get("securityContext") or {}
        self.require(csc.get("allowPrivilegeEscalation") is False, f"{what}: allowPrivilegeEscalation must be false")
        self.require(csc.get("readOnlyRootFilesystem") is True, f"{what}: readOnlyRootFilesystem must be true")
        self.require(not csc.get("privileged"), f"{what}: must not be privileged")
        caps = csc.get("capabilities") or {}
        self.require(caps.get("drop") == ["ALL"], f"{what}: capabilities must drop ALL")
        self.require(not caps.get("add"), f"{what}: must not add capabilities")
        self.require(csc.get("runAsNonRoot", True) is True and csc.get("runAsUser", UID) != 0,
                     f"{what}: must not run as root")
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        self.require(seccomp == "RuntimeDefault", f"{what}: seccompProfile must be RuntimeDefault")
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = (c.get(probe) or {}).get("httpGet") or {}
            self.require(get.get("path") == path and get.get("port") == "http",
                         f"{what}: {probe} must be httpGet {path} on the named port http")
        resources = c.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        self.require("cpu" in requests and "memory" in requests, f"{what}: needs cpu and memory requests")
        limit = parse_quantity_bytes(limits.get("memory", ""))
        request = parse_quantity_bytes(requests.get("memory", ""))
        self.require(limit is not None, f"{what}: needs a memory limit")
        if limit is not None and request is not None:
            self.require(request <= limit, f"{what}: memory request above the limit")
            self.require(limit >= 32 * 1024**2, f"{what}: memory limit under 32Mi (measured peak ~16 MiB)")
        self.max_body = int(next((e.get("value") for e in c.get("env") or [] if e.get("name") == "MAX_BODY_BYTES"),
                                 1048576))

    def pdb(self):
        pdb = self.one("PodDisruptionBudget", "hello-stateful")
        if pdb:
            spec = pdb.get("spec", {})
            self.require(spec.get("maxUnavailable") == 1, "PodDisruptionBudget/hello-stateful: maxUnavailable must be 1")
            self.require(spec.get("selector", {}).get("matchLabels") == APP,
                         f"PodDisruptionBudget/hello-stateful: selector must be {APP}")

    def ingress_path(self):
        ing = self.one("Ingress", "hello-stateful")
        if not ing:
            return None, None
        spec = ing.get("spec", {})
        rules = spec.get("rules") or []
        paths = [p for r in rules for p in ((r.get("http") or {}).get("paths") or [])]
        if not self.require(len(paths) == 1, f"Ingress/hello-stateful: expected exactly one path, found {len(paths)}"):
            return ing, None
        backend = (paths[0].get("backend") or {}).get("service") or {}
        port = backend.get("port") or {}
        self.require(backend.get("name") == SERVICE and (port.get("name") == "http" or port.get("number") == 8000),
                     f"Ingress/hello-stateful: backend must be {SERVICE} port http")
        return ing, paths[0]

    def check_rewrites(self, what, rewrite):
        for request, expected in REWRITES.items():
            got = rewrite(request)
            self.require(got == expected, f"{what}: {request} reaches the pod as {got!r}, expected {expected!r}")

    def ingress_nginx(self):
        ing, path = self.ingress_path()
        if not ing or not path:
            return
        what = "Ingress/hello-stateful (nginx)"
        notes = ing["metadata"].get("annotations") or {}
        self.require(ing["spec"].get("ingressClassName") == "nginx", f"{what}: ingressClassName must be nginx")
        self.require(path.get("pathType") == "ImplementationSpecific",
                     f"{what}: a regex path needs pathType ImplementationSpecific (ingress-nginx >= 1.12 rejects Prefix)")
        self.require(notes.get("nginx.ingress.kubernetes.io/use-regex") == "true", f"{what}: use-regex must be \"true\"")
        self.require(notes.get("nginx.ingress.kubernetes.io/rewrite-target") == "/$2", f"{what}: rewrite-target must be /$2")
        size = nginx_size_bytes(notes.get("nginx.ingress.kubernetes.io/proxy-body-size", ""))
        self.require(size == getattr(self, "max_body", 1048576),
                     f"{what}: proxy-body-size must equal MAX_BODY_BYTES ({getattr(self, 'max_body', 1048576)})")
        target = notes.get("nginx.ingress.kubernetes.io/rewrite-target", "")

        def rewrite(request):
            # ingress-nginx: location ~* "^<path>" and rewrite "(?i)<path>" <target> break.
            match = re.match(path.get("path", ""), request, re.IGNORECASE)
            if not match:
                return None
            return re.sub(r"\$(\d)", lambda m: match.group(int(m.group(1))) or "", target) or "/"

        self.check_rewrites(what, rewrite)

    def ingress_traefik(self):
        ing, path = self.ingress_path()
        if not ing or not path:
            return
        what = "Ingress/hello-stateful (traefik)"
        notes = ing["metadata"].get("annotations") or {}
        self.require(ing["spec"].get("ingressClassName") == "traefik", f"{what}: ingressClassName must be traefik")
        self.require(path.get("pathType") == "Prefix" and path.get("path") == "/stateful",
                     f"{what}: Traefik's PathPrefix is literal: path must be /stateful, pathType Prefix")
        self.require(not any(k.startswith("nginx.ingress.kubernetes.io/") for k in notes),
                     f"{what}: leftover ingress-nginx annotations")
        refs = [r.strip() for r in notes.get("traefik.ingress.kubernetes.io/router.middlewares", "").split(",") if r.strip()]
        namespace = ing["metadata"].get("namespace", "default")
        strips = []
        for ref in refs:
            match = re.fullmatch(r"(.+)@kubernetescrd", ref)
            found = [m for m in self.find("Middleware")
                     if match and f"{m['metadata'].get('namespace', 'default')}-{m['metadata']['name']}" == match.group(1)]
            if self.require(found and found[0]["metadata"].get("namespace", "default") == namespace,
                            f"{what}: middleware {ref} is not a Middleware of namespace {namespace} in these manifests"):
                strips += (found[0].get("spec", {}).get("stripPrefixRegex") or {}).get("regex") or []
        if not self.require(strips, f"{what}: needs a stripPrefixRegex Middleware in router.middlewares"):
            return

        def rewrite(request):
            # Traefik: PathPrefix(`/stateful`) routes; stripPrefixRegex removes the first match
            # at the start of the path, then puts back a leading slash ('' is sent as '/').
            if not request.startswith(path["path"]):
                return None
            for regex in strips:
                match = re.search(regex, request)
                if match and match.group(0) and request.startswith(match.group(0)):
                    rest = request.replace(match.group(0), "", 1)
                    return rest if rest.startswith("/") else "/" + rest
            return request

        self.check_rewrites(what, rewrite)

    def gateway(self):
        self.require(not self.find("Ingress"), "gateway: the HTTPRoute replaces the Ingress; found an Ingress")
        route = self.one("HTTPRoute", "hello-stateful")
        if not route:
            return
        what = "HTTPRoute/hello-stateful"
        spec = route.get("spec", {})
        self.require(spec.get("parentRefs") and all(p.get("name") for p in spec["parentRefs"]),
                     f"{what}: needs a parentRef naming a Gateway")
        rules = spec.get("rules") or []
        if not self.require(len(rules) == 1, f"{what}: expected exactly one rule"):
            return
        rule = rules[0]
        backends = rule.get("backendRefs") or []
        self.require(len(backends) == 1 and backends[0].get("name") == SERVICE and backends[0].get("port") == 8000,
                     f"{what}: backendRef must be {SERVICE} port 8000")
        matches = [m.get("path") or {} for m in rule.get("matches") or []]
        prefixes = [m.get("value") for m in matches if m.get("type") == "PathPrefix"]
        self.require(prefixes == ["/stateful"], f"{what}: must match PathPrefix /stateful only")
        rewrites = [(f.get("urlRewrite") or {}).get("path") or {} for f in rule.get("filters") or []
                    if f.get("type") == "URLRewrite"]
        replace = [r.get("replacePrefixMatch") for r in rewrites if r.get("type") == "ReplacePrefixMatch"]
        if not self.require(replace, f"{what}: needs a URLRewrite filter with ReplacePrefixMatch"):
            return

        def rewrite(request):
            # Gateway API PathPrefix matches whole segments; ReplacePrefixMatch swaps them.
            prefix = prefixes[0] if prefixes else ""
            if not (request == prefix or request.startswith(prefix.rstrip("/") + "/")):
                return None
            rest = request[len(prefix):]
            joined = replace[0].rstrip("/") + "/" + rest.lstrip("/")
            return joined if joined.startswith("/") else "/" + joined

        self.check_rewrites(what, rewrite)

    def podmonitor(self):
        if self.monitoring == "none":
            self.require(not self.find("PodMonitor"), "MONITORING=none: unexpected PodMonitor")
            return
        monitor = self.one("PodMonitor", "hello-stateful")
        if not monitor:
            return
        what = "PodMonitor/hello-stateful"
        spec = monitor.get("spec", {})
        self.require(spec.get("selector") == {"matchLabels": APP},
                     f"{what}: selector must be matchLabels {APP}, the StatefulSet's pod label")
        # The operator's default is the PodMonitor's own namespace, which is where the pods are.
        self.require(not spec.get("namespaceSelector"),
                     f"{what}: no namespaceSelector: the pods are in the PodMonitor's own namespace")
        endpoints = spec.get("podMetricsEndpoints") or []
        if not self.require(len(endpoints) == 1, f"{what}: expected exactly one podMetricsEndpoint, found {len(endpoints)}"):
            return
        endpoint = endpoints[0]
        self.require(endpoint.get("port") == "http" and "portNumber" not in endpoint and "targetPort" not in endpoint,
                     f"{what}: must scrape the container's named port http")
        self.require(endpoint.get("path") == "/metrics", f"{what}: path must be /metrics")
        interval = duration_seconds(endpoint.get("interval", ""))
        # Unset would leave it to each Prometheus's global interval; under 10 s costs more than
        # these counters change, over 2 m leaves a rate() over the usual windows too few samples.
        self.require(interval is not None and 10 <= interval <= 120,
                     f"{what}: interval must be set, from 10s to 2m (is {endpoint.get('interval')!r})")
        if "scrapeTimeout" in endpoint:
            timeout = duration_seconds(endpoint["scrapeTimeout"])
            self.require(timeout is not None and interval is not None and timeout <= interval,
                         f"{what}: scrapeTimeout must be a duration no longer than the interval")

    def no_ingress(self):
        for kind in ("Ingress", "HTTPRoute", "Middleware"):
            self.require(not self.find(kind), f"INGRESS=none: unexpected {kind}")


def check(docs, ingress, namespace=None, storage_class=None, monitoring="none"):
    return Policy(docs, ingress, namespace, storage_class, monitoring).run()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingress", required=True, choices=["nginx", "traefik", "gateway", "none"])
    parser.add_argument("--monitoring", default="none", choices=["none", "podmonitor"])
    parser.add_argument("--namespace")
    parser.add_argument("--storage-class")
    parser.add_argument("rendered")
    args = parser.parse_args()
    docs = [d for d in yaml.safe_load_all(Path(args.rendered).read_text()) if d]
    errors = check(docs, args.ingress, args.namespace, args.storage_class, args.monitoring)
    for error in errors:
        print(f"policy: {args.rendered}: {error}", file=sys.stderr)
    if errors:
        return 1
    print(f"policy: {args.rendered}: {len(docs)} objects conform (ingress {args.ingress}, monitoring {args.monitoring})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
