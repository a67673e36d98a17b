"""A model's exception reaches the caller, unary and mid-stream, whatever pickle makes of it.

The model runs in a worker process; each exception below is one pickle cannot send back as
it is (its ``__init__`` takes more than its message, or it holds a lock). The caller gets
its own type where its class and attributes rebuild it, else a stand-in that keeps the
message and, for caikit and gRPC errors, the status code; a stream raises at once, after
the items it yielded, never after ``call_timeout``.
"""

from __future__ import annotations

import time

import grpc
import pytest
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from caikit.core.modules import ModuleConfig
from parity_testlib import Raiser, TwoPartError

from caikit_dask import DaskModelInitializer
from caikit_dask.loading.wire.exceptions import RemoteError, RemoteRpcError

CALL_TIMEOUT = 60  # what a lost exception used to cost: the call waited this long


@pytest.fixture(scope="module")
def raiser(local_cluster, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("raiser") / "raiser")
    Raiser().save(path)
    initializer = DaskModelInitializer(
        {
            "connection": {"address": local_cluster.scheduler_address, "timeout": "20s"},
            "call_timeout": f"{CALL_TIMEOUT}s",
        },
        "raiser",
    )
    model = initializer.init(ModuleConfig.load(path))
    yield model
    model.close()


def check_core(err: BaseException) -> None:
    assert type(err) is CaikitCoreException  # its own type: rebuilt without its __init__
    assert err.status_code is CaikitCoreStatusCode.INVALID_ARGUMENT
    assert err.message == "the text is unusable"


def check_grpc(err: BaseException) -> None:
    assert isinstance(err, grpc.RpcError) and isinstance(err, RemoteRpcError)
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "quota of the upstream service used up"
    assert err.remote_type == "parity_testlib.QuotaExceeded"


def check_two_part(err: BaseException) -> None:
    assert type(err) is TwoPartError
    assert err.part == "tokenizer" and str(err) == "tokenizer: text too long"


def check_locked(err: BaseException) -> None:
    assert type(err) is RemoteError
    assert str(err) == "the model's lock is held"
    assert err.remote_type == "parity_testlib.LockedError"
    assert "raise failure(text)" in err.remote_traceback  # the worker's traceback


CHECKS = {"core": check_core, "grpc": check_grpc, "two-part": check_two_part}
CHECKS["locked"] = check_locked


@pytest.mark.parametrize("kind", list(CHECKS))
def test_unary_call_raises_the_models_exception(raiser, kind):
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the checks say which
        raiser.run(kind)
    CHECKS[kind](raised.value)


@pytest.mark.parametrize("kind", list(CHECKS))
def test_stream_yields_its_items_then_raises_at_once(raiser, kind):
    received = []
    started = time.monotonic()
    with pytest.raises(Exception) as raised:  # noqa: PT011 - the checks say which
        for item in raiser.run_stream(kind):
            received.append(item.index)
    took = time.monotonic() - started
    CHECKS[kind](raised.value)
    assert received == [0, 1, 2]
    assert took < CALL_TIMEOUT / 4, f"the stream's exception took {took:.1f}s to arrive"


def test_the_model_still_answers_after_its_exceptions(raiser):
    for kind in CHECKS:
        with pytest.raises(Exception):  # noqa: PT011, B017 - any of them
            list(raiser.run_stream(kind))
    assert raiser.run("fine").label == "fine"
    assert [item.label for item in raiser.run_stream("fine")] == ["fine"] * 3
