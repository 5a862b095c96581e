#!/usr/bin/env python3
"""Split rendered manifests into built-in kinds and custom kinds, and validate the custom ones.

kubernetes-validate knows only built-in kinds (it merely warns on others), so the custom kinds
(Traefik's Middleware, the Gateway API's HTTPRoute) are checked here against the OpenAPI v3
schemas of their CustomResourceDefinitions in the --schemas folder, as strictly as the API
server's field validation: unknown fields are errors. The built-in documents are written to
--builtin-out for kubernetes-validate. Without --schemas the custom kinds are only split off.

usage: crds.py [--schemas DIR] --builtin-out FILE RENDERED.yaml
"""

import argparse
import copy
import sys
from pathlib import Path

import yaml


def load_crd_schemas(directory):
    """(apiVersion, kind) -> JSON schema, for every served version of every CRD in directory.

    Any .yaml or .yml file there is read, one CRD per document or many (a release's install
    file as it is published), and documents of other kinds are passed over.
    """
    schemas = {}
    for path in sorted([*Path(directory).glob("*.yaml"), *Path(directory).glob("*.yml")]):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            group = doc["spec"]["group"]
            kind = doc["spec"]["names"]["kind"]
            for version in doc["spec"]["versions"]:
                if version.get("served", True):
                    schema = version["schema"]["openAPIV3Schema"]
                    schemas[(f"{group}/{version['name']}", kind)] = strict(schema)
    return schemas


def strict(schema):
    """A copy of an OpenAPI schema in which objects reject properties they do not declare.

    This is what `kubectl apply` does with server-side field validation (Strict, the default
    since Kubernetes 1.27), rather than the silent pruning a structural schema does alone.
    """
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    # metadata is only `type: object` in a CRD; the API server checks it as ObjectMeta.
    schema.setdefault("properties", {})["metadata"] = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        "additionalProperties": False,
    }
    return schema


BUILTIN_GROUPS = {"v1", "apps/v1", "policy/v1", "networking.k8s.io/v1", "batch/v1"}


def validate(schemas, custom, schemas_dir):
    """One message per way the custom documents differ from their CRD schemas; [] if none."""
    # Only the check needs jsonschema: splitting the kinds apart works with PyYAML alone.
    import jsonschema

    errors = []
    for doc in custom:
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = f"{key[1]}/{doc.get('metadata', {}).get('name')}"
        if key not in schemas:
            errors.append(f"{name}: no schema for {key[0]} {key[1]} in {schemas_dir}")
            continue
        validator = jsonschema.Draft7Validator(schemas[key])
        for error in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
            where = "/".join(str(p) for p in error.path) or "(root)"
            errors.append(f"{name}: {where}: {error.message}")
    return errors


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemas", help="folder of CustomResourceDefinition YAML files")
    parser.add_argument("--builtin-out", required=True)
    parser.add_argument("rendered")
    args = parser.parse_args()

    docs = [d for d in yaml.safe_load_all(Path(args.rendered).read_text()) if d]
    builtin = [d for d in docs if d.get("apiVersion") in BUILTIN_GROUPS]
    custom = [d for d in docs if d.get("apiVersion") not in BUILTIN_GROUPS]
    Path(args.builtin_out).write_text(yaml.safe_dump_all(builtin, sort_keys=False))
    if args.schemas is None:
        print(f"crds: {args.rendered}: {len(custom)} custom object(s) not checked, {len(builtin)} built-in")
        return 0
    schemas = load_crd_schemas(args.schemas)
    if not schemas:
        print(f"crds: no CustomResourceDefinitions in {args.schemas}", file=sys.stderr)
        return 1
    errors = validate(schemas, custom, args.schemas)
    for error in errors:
        print(f"crds: {args.rendered}: {error}", file=sys.stderr)
    if errors:
        return 1
    print(f"crds: {args.rendered}: {len(custom)} custom object(s) valid, {len(builtin)} built-in")
    return 0


if __name__ == "__main__":
    sys.exit(main())
