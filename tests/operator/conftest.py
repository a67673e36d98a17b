"""Models served on the session's LocalCluster, for looking at from outside."""

from __future__ import annotations

import os

import pytest
from caikit.core.modules import ModuleConfig

from caikit_dask import DaskModelInitializer
from caikit_dask.example import TextClassifier

NAMES = ("sentiment", "reviews", "tickets")


@pytest.fixture(scope="module")
def served(local_cluster, tmp_path_factory):
    """Three models with two replicas each, loaded by this process: ``{name: proxy}``."""
    root = tmp_path_factory.mktemp("served")
    connection = {"address": local_cluster.scheduler_address, "timeout": "20s"}
    initializer = DaskModelInitializer({"connection": connection, "replicas": 2}, "operator")
    proxies = {}
    for name in NAMES:
        path = os.path.join(root, name)
        TextClassifier.train(epochs=3).save(path)
        proxies[name] = initializer.init(ModuleConfig.load(path))
    yield proxies
    for proxy in proxies.values():
        proxy.close()
