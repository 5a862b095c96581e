#!/usr/bin/env python3
"""Prove that policy.py catches what it claims to: each case breaks one thing in a copy of the
good rendered manifests and expects the policy to fail with a message naming it. A policy that
passes everything would pass the real manifests too, so this is what makes its green mean
something.

usage: policy_selftest.py DIR   (DIR holds nginx.yaml, traefik.yaml, gateway.yaml, none.yaml and
                                 podmonitor.yaml, the nginx ingress with MONITORING=podmonitor,
                                 rendered in namespace `demo`)
"""

import copy
import sys
from pathlib import Path

import yaml

from policy import check


def get(docs, kind):
    return next(d for d in docs if d["kind"] == kind)


def pod(docs):
    return get(docs, "StatefulSet")["spec"]["template"]["spec"]


def container(docs):
    return pod(docs)["containers"][0]


def ann(docs):
    return get(docs, "Ingress")["metadata"]["annotations"]


def endpoint(docs):
    return get(docs, "PodMonitor")["spec"]["podMetricsEndpoints"][0]


def path0(docs):
    return get(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"][0]


# The rendered files: name -> (INGRESS, MONITORING) they were rendered with.
RENDERINGS = {
    "nginx": ("nginx", "none"),
    "traefik": ("traefik", "none"),
    "gateway": ("gateway", "none"),
    "none": ("none", "none"),
    "podmonitor": ("nginx", "podmonitor"),
}

# (rendering, what breaks, mutation, text the failure must contain)
CASES = [
    ("nginx", "runAsNonRoot dropped", lambda d: pod(d)["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    ("nginx", "runs as root", lambda d: pod(d)["securityContext"].update(runAsUser=0), "runAsUser"),
    ("nginx", "fsGroup dropped", lambda d: pod(d)["securityContext"].pop("fsGroup"), "fsGroup"),
    ("nginx", "seccomp Unconfined", lambda d: pod(d)["securityContext"].update(seccompProfile={"type": "Unconfined"}), "seccompProfile"),
    ("nginx", "privilege escalation", lambda d: container(d)["securityContext"].update(allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
    ("nginx", "writable root filesystem", lambda d: container(d)["securityContext"].pop("readOnlyRootFilesystem"), "readOnlyRootFilesystem"),
    ("nginx", "capabilities kept", lambda d: container(d)["securityContext"].pop("capabilities"), "drop ALL"),
    ("nginx", "capability added", lambda d: container(d)["securityContext"]["capabilities"].update(add=["NET_ADMIN"]), "add capabilities"),
    ("nginx", "privileged", lambda d: container(d)["securityContext"].update(privileged=True), "privileged"),
    ("nginx", "token mounted", lambda d: pod(d).pop("automountServiceAccountToken"), "automountServiceAccountToken"),
    ("nginx", "service links", lambda d: pod(d).update(enableServiceLinks=True), "enableServiceLinks"),
    ("nginx", "host network", lambda d: pod(d).update(hostNetwork=True), "hostNetwork"),
    ("nginx", "hostPath volume", lambda d: pod(d).update(volumes=[{"name": "h", "hostPath": {"path": "/"}}]), "hostPath"),
    ("nginx", "no grace period", lambda d: pod(d).pop("terminationGracePeriodSeconds"), "terminationGracePeriodSeconds"),
    ("nginx", "liveness probe dropped", lambda d: container(d).pop("livenessProbe"), "livenessProbe"),
    ("nginx", "readiness on /healthz", lambda d: container(d)["readinessProbe"]["httpGet"].update(path="/healthz"), "readinessProbe"),
    ("nginx", "probe by port number", lambda d: container(d)["livenessProbe"]["httpGet"].update(port=8000), "livenessProbe"),
    ("nginx", "memory limit dropped", lambda d: container(d)["resources"].pop("limits"), "memory limit"),
    ("nginx", "requests dropped", lambda d: container(d)["resources"].pop("requests"), "requests"),
    ("nginx", "latest tag", lambda d: container(d).update(image="hello-stateful:latest"), "non-latest"),
    ("nginx", "pull always", lambda d: container(d).update(imagePullPolicy="Always"), "imagePullPolicy"),
    ("nginx", "volume not mounted", lambda d: container(d).pop("volumeMounts"), "mounted at /etc/stateful"),
    ("nginx", "storage class hard-coded", lambda d: get(d, "StatefulSet")["spec"]["volumeClaimTemplates"][0]["spec"].update(storageClassName="nfs-client"), "storageClassName"),
    ("nginx", "claims deleted on scale", lambda d: get(d, "StatefulSet")["spec"]["persistentVolumeClaimRetentionPolicy"].update(whenScaled="Delete"), "Retain"),
    ("nginx", "Parallel pods", lambda d: get(d, "StatefulSet")["spec"].update(podManagementPolicy="Parallel"), "OrderedReady"),
    ("nginx", "wrong serviceName", lambda d: get(d, "StatefulSet")["spec"].update(serviceName="hello"), "serviceName"),
    ("nginx", "Service not headless", lambda d: get(d, "Service")["spec"].pop("clusterIP"), "headless"),
    ("nginx", "not-ready pods published", lambda d: get(d, "Service")["spec"].update(publishNotReadyAddresses=True), "publishNotReadyAddresses"),
    ("nginx", "PDB maxUnavailable 2", lambda d: get(d, "PodDisruptionBudget")["spec"].update(maxUnavailable=2), "maxUnavailable"),
    ("nginx", "PDB missing", lambda d: d.remove(get(d, "PodDisruptionBudget")), "PodDisruptionBudget"),
    ("nginx", "label missing", lambda d: get(d, "Service")["metadata"]["labels"].clear(), "label"),
    ("nginx", "pathType Prefix", lambda d: path0(d).update(pathType="Prefix"), "ImplementationSpecific"),
    ("nginx", "rewrite to /", lambda d: ann(d).update({"nginx.ingress.kubernetes.io/rewrite-target": "/"}), "rewrite-target"),
    ("nginx", "use-regex dropped", lambda d: ann(d).pop("nginx.ingress.kubernetes.io/use-regex"), "use-regex"),
    ("nginx", "body limit dropped", lambda d: ann(d).pop("nginx.ingress.kubernetes.io/proxy-body-size"), "proxy-body-size"),
    ("nginx", "body limit 8m", lambda d: ann(d).update({"nginx.ingress.kubernetes.io/proxy-body-size": "8m"}), "proxy-body-size"),
    ("nginx", "the original notes' /hello path", lambda d: path0(d).update(path="/hello(/|$)(.*)"), "reaches the pod"),
    ("nginx", "the original notes' second rule", lambda d: get(d, "Ingress")["spec"]["rules"][0]["http"]["paths"].append(copy.deepcopy(path0(d))), "exactly one path"),
    ("nginx", "no ingress class", lambda d: get(d, "Ingress")["spec"].pop("ingressClassName"), "ingressClassName"),
    ("nginx", "wrong backend", lambda d: path0(d)["backend"]["service"].update(name="hello-service"), "backend"),
    ("nginx", "wrong namespace", lambda d: get(d, "Service")["metadata"].update(namespace="default"), "namespace"),
    ("traefik", "middleware of another namespace", lambda d: ann(d).update({"traefik.ingress.kubernetes.io/router.middlewares": "default-hello-stateful-strip-prefix@kubernetescrd"}), "not a Middleware"),
    ("traefik", "middleware not referenced", lambda d: ann(d).clear(), "stripPrefixRegex"),
    ("traefik", "strip regex keeps the prefix", lambda d: get(d, "Middleware")["spec"]["stripPrefixRegex"].update(regex=["^/other"]), "reaches the pod"),
    ("traefik", "regex path under Traefik", lambda d: path0(d).update(path="/stateful(/|$)(.*)", pathType="ImplementationSpecific"), "PathPrefix is literal"),
    ("traefik", "nginx annotations left", lambda d: ann(d).update({"nginx.ingress.kubernetes.io/rewrite-target": "/$2"}), "ingress-nginx annotations"),
    ("gateway", "no URLRewrite", lambda d: get(d, "HTTPRoute")["spec"]["rules"][0].pop("filters"), "URLRewrite"),
    ("gateway", "rewrite to /x", lambda d: get(d, "HTTPRoute")["spec"]["rules"][0]["filters"][0]["urlRewrite"]["path"].update(replacePrefixMatch="/x"), "reaches the pod"),
    ("gateway", "Ingress kept", lambda d: d.append(copy.deepcopy(get(yaml_docs("nginx"), "Ingress"))), "replaces the Ingress"),
    ("gateway", "no parentRef", lambda d: get(d, "HTTPRoute")["spec"].pop("parentRefs"), "parentRef"),
    ("none", "Ingress left", lambda d: d.append(copy.deepcopy(get(yaml_docs("nginx"), "Ingress"))), "unexpected Ingress"),
    ("nginx", "PodMonitor without MONITORING", lambda d: d.append(copy.deepcopy(get(yaml_docs("podmonitor"), "PodMonitor"))), "unexpected PodMonitor"),
    ("podmonitor", "PodMonitor missing", lambda d: d.remove(get(d, "PodMonitor")), "PodMonitor/hello-stateful: expected exactly one"),
    ("podmonitor", "PodMonitor selects other pods", lambda d: get(d, "PodMonitor")["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "hello"}), "selector"),
    ("podmonitor", "PodMonitor in other namespaces", lambda d: get(d, "PodMonitor")["spec"].update(namespaceSelector={"any": True}), "namespaceSelector"),
    ("podmonitor", "scrape by port number", lambda d: endpoint(d).update(port=None, portNumber=8000), "named port http"),
    ("podmonitor", "scrape path /metric", lambda d: endpoint(d).update(path="/metric"), "/metrics"),
    ("podmonitor", "no interval", lambda d: endpoint(d).pop("interval"), "interval"),
    ("podmonitor", "interval 1s", lambda d: endpoint(d).update(interval="1s"), "interval"),
    ("podmonitor", "scrape timeout past the interval", lambda d: endpoint(d).update(scrapeTimeout="1m"), "scrapeTimeout"),
    ("podmonitor", "PodMonitor unlabelled", lambda d: get(d, "PodMonitor")["metadata"].pop("labels"), "label"),
]

RENDERED = {}


def yaml_docs(name):
    return copy.deepcopy(RENDERED[name])


def check_rendering(docs, name):
    ingress, monitoring = RENDERINGS[name]
    return check(docs, ingress, "demo", monitoring=monitoring)


def main():
    directory = Path(sys.argv[1])
    for rendering in RENDERINGS:
        RENDERED[rendering] = [d for d in yaml.safe_load_all((directory / f"{rendering}.yaml").read_text()) if d]
    passed = failed = 0
    for rendering in RENDERED:
        errors = check_rendering(yaml_docs(rendering), rendering)
        if errors:
            failed += 1
            print(f"FAIL: the unbroken {rendering} manifests fail the policy: {errors}")
        else:
            passed += 1
    for rendering, name, mutate, expected in CASES:
        docs = yaml_docs(rendering)
        mutate(docs)
        errors = check_rendering(docs, rendering)
        if any(expected in e for e in errors):
            passed += 1
            print(f"ok: policy rejects {rendering}: {name}")
        else:
            failed += 1
            print(f"FAIL: policy accepts {rendering}: {name} (expected an error containing {expected!r}, got {errors})")
    print(f"policy self-test: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
