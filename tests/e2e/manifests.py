"""The facts the emulation takes from the rendered k8s/ manifests, and nothing else.

The manifests are rendered by the Makefile's own `make manifests INGRESS=<component>` (the
overlay `make deploy` applies), then turned into JSON offline by kubectl
(`kubectl label --local -o json`), so no YAML library is needed. Every value the emulation
uses (names, replicas, ports and their names, mount path, user, the environment with the
downward API's pod fields to fill in per pod, the readiness probe and its timing, the ingress
rewrite of each component) comes from here; a value the emulation cannot honour is an error that
names it, the way the cluster would refuse or silently break on it.
"""

import json
import os
import re
import subprocess
import tempfile

COMPONENTS = ("nginx", "traefik", "gateway")


def quantity_bytes(q):
    """A Kubernetes memory quantity ("64Mi", "1G", "1048576") in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9}
    for unit, factor in units.items():
        if q.endswith(unit):
            return int(q[: -len(unit)]) * factor
    return int(q)


def env_value(e, container):
    """What the kubelet puts in an env entry that is the same in every pod: a plain value, or
    the container's own memory limit (resourceFieldRef limits.memory, divisor 1), the one
    resource reference the manifests use."""
    if "value" in e:
        return e["value"]
    ref = e.get("valueFrom", {}).get("resourceFieldRef", {})
    if ref.get("resource") == "limits.memory" and ref.get("divisor", "1") in ("1", 1):
        return str(quantity_bytes(container["resources"]["limits"]["memory"]))
    raise ManifestError(f"env {e['name']}: only plain values, limits.memory and the pod "
                        f"fields {', '.join(POD_FIELDS)} are emulated")


# The downward API's pod fields the emulation can fill in truthfully for each pod (see
# emulation.Cluster.pod_fields): its name, its namespace, the address it is started with and
# the emulation's one node. Others (uid, labels, hostIP, ...) would be made up: refused.
POD_FIELDS = ("metadata.name", "metadata.namespace", "status.podIP", "spec.nodeName")


def field_path(e):
    """The pod field an env entry takes its value from (fieldRef), or None for any other kind
    of entry. The value differs from pod to pod, so it is filled in when a pod starts."""
    ref = e.get("valueFrom", {}).get("fieldRef")
    if ref is None:
        return None
    if ref.get("apiVersion", "v1") != "v1" or ref.get("fieldPath") not in POD_FIELDS:
        raise ManifestError(f"env {e['name']}: fieldRef {ref.get('fieldPath')!r} is not one "
                            f"of the emulated pod fields {', '.join(POD_FIELDS)}")
    return ref["fieldPath"]


class ManifestError(Exception):
    pass


def render(repo, ingress):
    """The objects of `make manifests INGRESS=<ingress>` as a list of dicts."""
    env = dict(os.environ, INGRESS=ingress, CONTAINER_TOOL="podman")
    # NAMESPACE and REPLICAS are left to the Makefile's defaults: what `make deploy` applies.
    for k in ("NAMESPACE", "REPLICAS", "TAG", "REGISTRY"):
        env.pop(k, None)
    out = subprocess.run(
        ["make", "-s", "--no-print-directory", "manifests", f"INGRESS={ingress}",
         "CONTAINER_TOOL=podman"],
        cwd=repo, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise ManifestError(f"make manifests INGRESS={ingress} failed: {out.stderr.strip()}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(out.stdout)
        f.flush()
        # kubectl converts YAML to JSON without a cluster when --local; the label is throwaway.
        js = subprocess.run(
            ["kubectl", "label", "--local", "-f", f.name, "-o", "json", "e2e.local/rendered=1"],
            capture_output=True, text=True)
    if js.returncode != 0:
        raise ManifestError(f"kubectl could not read the rendered manifests: {js.stderr.strip()}")
    objs, dec, i, s = [], json.JSONDecoder(), 0, js.stdout
    while True:
        while i < len(s) and s[i].isspace():
            i += 1
        if i >= len(s):
            break
        obj, i = dec.raw_decode(s, i)
        objs.extend(obj["items"] if obj.get("kind") == "List" else [obj])
    return objs


def one(objs, kind, name=None, api_prefix=None):
    found = [o for o in objs if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)
             and (api_prefix is None or o["apiVersion"].startswith(api_prefix))]
    if len(found) != 1:
        raise ManifestError(f"expected one {kind}{' ' + name if name else ''}, found {len(found)}")
    return found[0]


class App:
    """The StatefulSet, its headless Service and what a pod is run with."""

    def __init__(self, objs):
        sts = one(objs, "StatefulSet")
        self.namespace = sts["metadata"].get("namespace", "default")
        self.name = sts["metadata"]["name"]
        spec = sts["spec"]
        self.replicas = spec.get("replicas", 1)
        self.service_name = spec.get("serviceName", "")
        if spec.get("podManagementPolicy", "OrderedReady") != "OrderedReady":
            raise ManifestError("the emulation scales in order (podManagementPolicy OrderedReady)")
        tmpl = spec["template"]
        labels = tmpl["metadata"].get("labels", {})
        for k, v in spec["selector"].get("matchLabels", {}).items():
            if labels.get(k) != v:
                raise ManifestError(f"StatefulSet selector {k}={v} does not match its pod template")
        pod = tmpl["spec"]
        c = pod["containers"][0]
        self.image = c["image"]
        # env: the same in every pod; field_env: name -> the pod field (fieldRef) it holds.
        # A later entry of the same name wins, as in the kubelet.
        self.env, self.field_env = {}, {}
        for e in c.get("env", []):
            self.env.pop(e["name"], None)
            self.field_env.pop(e["name"], None)
            path = field_path(e)
            if path is None:
                self.env[e["name"]] = env_value(e, c)
            else:
                self.field_env[e["name"]] = path
        self.ports = [(p.get("name"), p["containerPort"]) for p in c.get("ports", [])]
        psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
        self.uid = csc.get("runAsUser", psc.get("runAsUser"))
        self.gid = csc.get("runAsGroup", psc.get("runAsGroup", self.uid))
        self.fs_group = psc.get("fsGroup")
        self.read_only_root = csc.get("readOnlyRootFilesystem", False)
        self.drop_all_caps = "ALL" in csc.get("capabilities", {}).get("drop", [])
        self.no_new_privs = csc.get("allowPrivilegeEscalation") is False
        self.grace_seconds = pod.get("terminationGracePeriodSeconds", 30)
        pre = c.get("lifecycle", {}).get("preStop", {})
        self.pre_stop_sleep = pre.get("sleep", {}).get("seconds", 0)
        if pre and "sleep" not in pre:
            raise ManifestError("only a preStop sleep is emulated")
        # The volume: a claim template mounted in the container (a PVC per pod).
        claims = [t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])]
        mounts = [m for m in c.get("volumeMounts", []) if m["name"] in claims]
        volumes = {v["name"] for v in pod.get("volumes", [])}
        for m in c.get("volumeMounts", []):
            if m["name"] not in claims and m["name"] not in volumes:
                raise ManifestError(f"volumeMount {m['name']} names no volume or claim template")
        if len(mounts) != 1:
            raise ManifestError(f"expected one volumeClaimTemplate mounted, found {len(mounts)}")
        self.claim = mounts[0]["name"]
        self.mount_path = mounts[0]["mountPath"]
        readiness = c.get("readinessProbe", {})
        probe = readiness.get("httpGet")
        if not probe:
            raise ManifestError("no httpGet readinessProbe: the emulation needs one to know readiness")
        _need(probe.get("scheme", "HTTP") == "HTTP" and "host" not in probe,
              "the emulation probes plain HTTP on the pod's own address (no scheme or host)")
        self.ready_path = probe.get("path", "/")
        self.ready_port = self.container_port(probe["port"])  # None: the kubelet's probe fails
        self.ready_headers = {h["name"]: h["value"] for h in probe.get("httpHeaders", [])}
        # How often and how strictly the kubelet probes; its defaults where the manifest is
        # silent.
        self.ready_delay = readiness.get("initialDelaySeconds", 0)
        self.ready_period = readiness.get("periodSeconds", 10)
        self.ready_timeout = readiness.get("timeoutSeconds", 1)
        self.ready_failures = readiness.get("failureThreshold", 3)
        self.ready_successes = readiness.get("successThreshold", 1)
        # The governing Service: headless, selecting the pods.
        svc = one(objs, "Service", self.service_name)
        if svc["spec"].get("clusterIP") != "None":
            raise ManifestError(f"Service {self.service_name} is not headless (clusterIP: None)")
        for k, v in svc["spec"].get("selector", {}).items():
            if labels.get(k) != v:
                raise ManifestError(f"Service selector {k}={v} selects none of the pods")
        # Endpoint ports: (name, service port, pod port or None when targetPort does not resolve;
        # the endpoints controller then leaves the pods out, so there is no endpoint at all).
        self.svc_ports = []
        for p in svc["spec"]["ports"]:
            self.svc_ports.append((p.get("name", ""), p["port"],
                                   self.container_port(p.get("targetPort", p["port"]))))
        # kubectl proxy's pods/<name>/proxy without a port: the first container's first port.
        self.proxy_port = self.ports[0][1] if self.ports else 80

    def container_port(self, ref):
        if isinstance(ref, int):
            return ref
        if ref.isdigit():
            return int(ref)
        for name, port in self.ports:
            if name == ref:
                return port
        return None

    def pod_name(self, i):
        return f"{self.name}-{i}"

    def svc_port(self, ref):
        """(name, port, pod port) of the Service port an Ingress/HTTPRoute backend names."""
        for p in self.svc_ports:
            if ref in (p[0], p[1]):
                return p
        return None


def _need(cond, msg):
    if not cond:
        raise ManifestError(msg)


class Route:
    """How an ingress controller maps a request path, in nginx terms.

    location: the nginx `location` line (modifier and pattern); rewrite: (regex, replacement)
    applied with `rewrite ... break`, or None; backend: the Service port it goes to (or None
    when the backend names no port of the headless Service: 503, no endpoints).
    """

    def __init__(self, desc, location, rewrite, backend, body_size=None):
        self.desc, self.location, self.rewrite, self.backend = desc, location, rewrite, backend
        self.body_size = body_size


def ingress_routes(objs, app, component):
    """The routes one ingress component gives, from its rendered objects."""
    if component == "gateway":
        return _httproute_routes(objs, app)
    ing = one(objs, "Ingress")
    ann = ing["metadata"].get("annotations", {})
    cls = ing["spec"].get("ingressClassName")
    routes = []
    for rule in ing["spec"]["rules"]:
        _need("host" not in rule, "the emulation serves host-less rules only")
        for p in rule["http"]["paths"]:
            path, ptype = p["path"], p["pathType"]
            b = p["backend"]["service"]
            port = app.svc_port(b["port"].get("name") or b["port"].get("number"))
            backend = port if b["name"] == app.service_name else None
            if component == "nginx":
                _need(cls == "nginx", f"ingress-nginx component: ingressClassName is {cls}")
                regex = (ann.get("nginx.ingress.kubernetes.io/use-regex") == "true"
                         or "nginx.ingress.kubernetes.io/rewrite-target" in ann)
                target = ann.get("nginx.ingress.kubernetes.io/rewrite-target")
                size = ann.get("nginx.ingress.kubernetes.io/proxy-body-size", "1m")
                if regex:
                    # What ingress-nginx generates: a case-insensitive location anchored at the
                    # start, and `rewrite (?i)<path> <target> break`.
                    loc = f'~* "^{path}"'
                    rw = (f"(?i){path}", target) if target else None
                else:
                    loc, rw = _prefix_location(path, ptype), None
                routes.append(Route(f"ingress-nginx {path} -> {target}", loc, rw, backend, size))
            elif component == "traefik":
                _need(cls == "traefik", f"Traefik component: ingressClassName is {cls}")
                _need(ptype in ("Prefix", "Exact"), f"Traefik: pathType {ptype} on {path}")
                # Traefik v3's PathPrefix is a plain string prefix, not a regex.
                loc = f'~ "^{re.escape(path)}"' if ptype == "Prefix" else f"= {path}"
                rw = None
                mws = [m.strip() for m in
                       ann.get("traefik.ingress.kubernetes.io/router.middlewares", "").split(",")
                       if m.strip()]
                for ref in mws:
                    mw = _traefik_middleware(objs, app, ref)
                    regexes = mw["spec"].get("stripPrefixRegex", {}).get("regex", [])
                    _need(len(regexes) == 1 and rw is None,
                          f"Middleware {ref}: the emulation handles one stripPrefixRegex")
                    # stripPrefixRegex removes the matched prefix; Traefik puts back a leading /.
                    groups = re.compile(regexes[0]).groups
                    rw = (f"^(?:{regexes[0].lstrip('^')})(.*)$", f"/${groups + 1}")
                routes.append(Route(f"Traefik {path} ({ptype}) strip {rw}", loc, rw, backend))
    return routes


def _traefik_middleware(objs, app, ref):
    m = re.fullmatch(r"(.+)@kubernetescrd", ref)
    _need(m, f"router.middlewares {ref}: not a <namespace>-<name>@kubernetescrd reference")
    for mw in objs:
        if mw["kind"] == "Middleware":
            ns = mw["metadata"].get("namespace", app.namespace)
            if f"{ns}-{mw['metadata']['name']}" == m.group(1):
                return mw
    # Traefik refuses the router when its middleware does not exist: every request is a 404.
    raise ManifestError(f"router.middlewares {ref}: no such Middleware in the manifests")


def _prefix_location(path, ptype):
    if ptype == "Exact":
        return f"= {path}"
    # Kubernetes Prefix (and Gateway PathPrefix) match whole path elements.
    p = path.rstrip("/")
    return f'~ "^{re.escape(p)}(/|$)"'


def _httproute_routes(objs, app):
    route = one(objs, "HTTPRoute")
    routes = []
    for rule in route["spec"]["rules"]:
        refs = rule.get("backendRefs", [])
        _need(len(refs) == 1, "the emulation handles one backendRef per rule")
        port = app.svc_port(refs[0].get("port"))
        backend = port if refs[0]["name"] == app.service_name else None
        rw = None
        for f in rule.get("filters", []):
            if f["type"] == "URLRewrite":
                path = f["urlRewrite"].get("path", {})
                _need(path.get("type") == "ReplacePrefixMatch", "only ReplacePrefixMatch rewrites")
                rw = path["replacePrefixMatch"]
        for m in rule.get("matches", [{"path": {"type": "PathPrefix", "value": "/"}}]):
            p = m["path"]
            _need(p["type"] == "PathPrefix", f"HTTPRoute path type {p['type']}")
            prefix = p["value"].rstrip("/")
            loc = _prefix_location(p["value"], "Prefix")
            rewrite = None
            if rw is not None:
                # ReplacePrefixMatch swaps the matched path elements for the replacement:
                # /stateful/store -> <rw>/store, /stateful -> <rw>.
                base = rw.rstrip("/")
                rewrite = (f"^{re.escape(prefix)}/?(.*)$", f"{base}/$1")
            routes.append(Route(f"HTTPRoute PathPrefix {p['value']} -> {rw}", loc, rewrite,
                                backend))
    return routes
