"""Any request context reaches a model on a worker as caikit's runtime would hand it over.

caikit marks a task method's context parameter (``context_arg``, typed
``RuntimeServerContextType``); what is passed there is a context whatever its class: a
test's own context class, a subclass of grpc's, or an object that does not pickle at all.
The module receives a ``ForwardedContext`` with the request metadata it offered.
"""

from __future__ import annotations

import json
import threading

import grpc
import pytest
from caikit.core.modules import ModuleConfig
from parity_testlib import ContextReader

from caikit_dask import DaskModelInitializer


class TestsOwnContext:
    """A context as a test harness writes one: no grpc base class, metadata on offer."""

    __test__ = False

    def __init__(self, **metadata: str):
        self.metadata = metadata
        self.lock = threading.Lock()  # and it does not pickle

    def invocation_metadata(self):
        return list(self.metadata.items())


class ServicerContextSubclass(grpc.ServicerContext):
    """caikit's own test fixtures subclass grpc.ServicerContext in their test package."""

    def __init__(self, **metadata: str):
        self.metadata = metadata

    def invocation_metadata(self):
        return list(self.metadata.items())

    def __getattr__(self, name):  # the abstract methods nobody calls here
        raise AttributeError(name)


ServicerContextSubclass.__abstractmethods__ = frozenset()


@pytest.fixture(scope="module")
def reader(local_cluster, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("context") / "reader")
    ContextReader().save(path)
    initializer = DaskModelInitializer(
        {"connection": {"address": local_cluster.scheduler_address, "timeout": "20s"}}, "context"
    )
    model = initializer.init(ModuleConfig.load(path))
    yield model
    model.close()


@pytest.mark.parametrize("context_class", [TestsOwnContext, ServicerContextSubclass])
@pytest.mark.parametrize("passed", ["keyword", "positional"])
def test_a_foreign_context_arrives_with_its_metadata(reader, context_class, passed):
    context = context_class(**{"mm-model-id": "reader", "x-tenant": "blue"})
    args, kwargs = ((), {"context": context}) if passed == "keyword" else ((context,), {})
    result = reader.run("hi", *args, **kwargs)
    assert result.has_context and result.context_type == "ForwardedContext"
    assert json.loads(result.metadata_value) == {"mm-model-id": "reader", "x-tenant": "blue"}


def test_whatever_is_passed_for_the_context_parameter_crosses_as_a_context(reader):
    result = reader.run("hi", context=threading.Event())  # offers no metadata, never pickles
    assert result.context_type == "ForwardedContext"
    assert json.loads(result.metadata_value) == {}


def test_no_context_stays_none(reader):
    result = reader.run("hi")
    assert not result.has_context and result.context_type == "NoneType"
