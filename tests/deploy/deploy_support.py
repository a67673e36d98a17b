"""Shared loaders for the deploy/ manifests.

Only PyYAML is needed here, so ``load_runtime_config`` works without the
``kubernetes`` extra; tests that need dask-kubernetes or kubernetes-validate skip
themselves with ``pytest.importorskip``.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
BASE_DIR = DEPLOY_DIR / "base"
RUNTIME_CONFIGMAP = "caikit-runtime-config"
RUNTIME_CONFIG_KEY = "runtime.yaml"


def load_kustomization() -> dict:
    """deploy/base/kustomization.yaml, parsed."""
    return yaml.safe_load((BASE_DIR / "kustomization.yaml").read_text())


def load_manifests() -> list[dict]:
    """Every object of every file listed in kustomization.yaml, in order.

    The kustomization's ``namespace`` is filled in on namespaced objects, as
    ``kubectl apply -k`` would; each object remembers its file in ``__file__``.
    """
    kustomization = load_kustomization()
    namespace = kustomization.get("namespace")
    objects = []
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((BASE_DIR / name).read_text()):
            if doc is None:
                continue
            if namespace and doc["kind"] != "Namespace":
                doc.setdefault("metadata", {})["namespace"] = namespace
            doc["__file__"] = name
            objects.append(doc)
    return objects


def strip(obj: dict) -> dict:
    """An object without the loader's bookkeeping keys, as it would be sent to the API."""
    return {k: v for k, v in copy.deepcopy(obj).items() if not k.startswith("__")}


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    """The one object of ``kind`` (and ``name``); fails the test when missing or ambiguous."""
    found = [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''} in deploy/base, found {len(found)}"
    return found[0]


def load_runtime_config() -> dict:
    """The caikit config that the runtime Deployment mounts (ConfigMap caikit-runtime-config)."""
    configmap = find(load_manifests(), "ConfigMap", RUNTIME_CONFIGMAP)
    return yaml.safe_load(configmap["data"][RUNTIME_CONFIG_KEY])


# The CRDs as the operator's Helm chart installs them (fully resolved schemas).
CRD_DIR = "operator/deployment/helm/dask-kubernetes-operator/crds"
CRD_FILES = {"DaskCluster": "daskcluster.yaml", "DaskWorkerGroup": "daskworkergroup.yaml"}


def _forbid_unknown_fields(schema: object) -> object:
    """The API server silently prunes unknown fields; in tests a typo must fail instead."""
    if isinstance(schema, dict):
        schema = {k: _forbid_unknown_fields(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        return schema
    if isinstance(schema, list):
        return [_forbid_unknown_fields(v) for v in schema]
    return schema


def crd(kind: str) -> dict:
    """The CustomResourceDefinition for ``kind`` shipped inside the installed dask_kubernetes."""
    pytest.importorskip("dask_kubernetes")
    from importlib.resources import files

    path = files("dask_kubernetes").joinpath(CRD_DIR, CRD_FILES[kind])
    return yaml.safe_load(path.read_text())


def crd_errors(obj: dict) -> list[str]:
    """Schema violations of a DaskCluster / DaskWorkerGroup, unknown fields included."""
    jsonschema = pytest.importorskip("jsonschema")
    definition = crd(obj["kind"])
    errors = []
    group, _, version = obj["apiVersion"].partition("/")
    if group != definition["spec"]["group"]:
        errors.append(f"apiVersion group {group!r} is not {definition['spec']['group']!r}")
    served = [v for v in definition["spec"]["versions"] if v["name"] == version and v["served"]]
    if not served:
        return [*errors, f"version {version!r} is not served by the {obj['kind']} CRD"]
    schema = _forbid_unknown_fields(served[0]["schema"]["openAPIV3Schema"])
    # apiVersion, kind and metadata are validated by the API server itself, not the CRD.
    body = {k: v for k, v in strip(obj).items() if k not in ("apiVersion", "kind", "metadata")}
    validator = jsonschema.Draft7Validator(schema)
    for error in sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in error.absolute_path)
        errors.append(f"{obj['kind']} {where}: {error.message}")
    return errors
