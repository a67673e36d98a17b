"""Bad input, one readable table: every case fails at the call, naming the problem, within
its bound, or (where the input is fine after all) works.

Each row: what is done, the exception expected at the call (None: it must succeed), a
pattern the message must match, and the bound within which the call must return or raise.
Several rows re-assert compactly what tests/test_config.py, tests/training/test_call_errors.py
and tests/loading/test_proxy.py cover in depth.
"""

from __future__ import annotations

import os
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from caikit.core.data_model import JobStatus
from caikit.core.exceptions.caikit_core_exception import (
    CaikitCoreException,
    CaikitCoreStatusCode,
)
from caikit.core.modules import ModuleConfig
from caikit.interfaces.common.data_model.stream_sources import S3Path
from cluster_support import poll
from dask.utils import format_bytes, parse_bytes
from dask_testlib import FaultModule, save_fault_model
from reliability_support import call_within

from caikit_dask import DaskBackend, DaskModelInitializer, DaskModelTrainer
from caikit_dask.errors import DaskBackendError, DaskConfigError

# -- the context every row gets --------------------------------------------------------------


@dataclass
class Ctx:
    connection: dict
    tmp_path: Path
    monkeypatch: pytest.MonkeyPatch
    cleanups: list[Callable[[], Any]] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def trainer(self, **config: Any) -> DaskModelTrainer:
        return DaskModelTrainer({"connection": self.connection, **config}, "bad-input")

    def initializer(self, **config: Any) -> DaskModelInitializer:
        return DaskModelInitializer(
            {"connection": self.connection, "call_timeout": "20s", **config}, "bad-input"
        )

    def fault_model(self, **kwargs: Any) -> str:
        return save_fault_model(str(self.tmp_path / "fault"), **kwargs)

    def proxy(self, path: str | None = None, **config: Any):
        proxy = self.initializer(**config).init(ModuleConfig.load(path or self.fault_model()))
        self.cleanups.append(proxy.close)
        return proxy

    def running_training(self, **train_kwargs: Any):
        future = self.trainer().train(FaultModule, seconds=60, **train_kwargs)
        self.cleanups.append(future.cancel)
        poll(lambda: future.get_info().status is JobStatus.RUNNING, 20, what="training to run")
        return future

    def finished_training(self):
        future = self.trainer().train(FaultModule)
        future.wait(20)
        assert future.get_info().status is JobStatus.COMPLETED
        return future


@pytest.fixture
def ctx(connection, tmp_path, monkeypatch):
    context = Ctx(connection, tmp_path, monkeypatch)
    yield context
    for cleanup in reversed(context.cleanups):
        cleanup()


def caller_only_module(ctx: Ctx, name: str) -> Any:
    """A registered caikit module in a file only the caller's process can import."""
    (ctx.tmp_path / f"{name}.py").write_text(
        textwrap.dedent(
            """
            import caikit.core
            from dask_testlib import FaultModule
            from caikit_dask.example import ExampleTextClassificationTask

            @caikit.core.module(
                id="6a1b7a0e-9c1e-4c55-8d1e-{suffix}",
                name="caller-only module",
                version="0.0.1",
                task=ExampleTextClassificationTask,
            )
            class CallerOnly(FaultModule):
                pass
            """
        ).replace("{suffix}", f"{abs(hash(name)) % 10**12:012d}")
    )
    ctx.monkeypatch.syspath_prepend(str(ctx.tmp_path))
    ctx.cleanups.append(lambda: sys.modules.pop(name, None))
    return __import__(name)


# -- the rows --------------------------------------------------------------------------------


def unpicklable_argument(ctx):
    return ctx.trainer().train(FaultModule, fail_with=threading.Lock())


def module_not_importable_for_training(ctx):
    module = caller_only_module(ctx, "caller_only_training")
    return ctx.trainer().train(module.CallerOnly)


def module_not_importable_for_loading(ctx):
    module = caller_only_module(ctx, "caller_only_loading")
    path = str(ctx.tmp_path / "caller-only-model")
    module.CallerOnly().save(path)
    return ctx.proxy(path)


def training_resources_no_worker_has(ctx):
    return ctx.trainer(resources={"TPU": 1}, resource_timeout=0).train(FaultModule)


def loading_resources_no_worker_has(ctx):
    return ctx.proxy(resources={"TPU": 1})


def model_path_only_the_caller_sees(ctx):
    """A relative path from another working directory: the workers get the model shipped."""
    ctx.fault_model()
    ctx.monkeypatch.chdir(ctx.tmp_path)  # the workers' cwd stays where they started
    client = ctx.initializer().backend.client
    assert not any(client.run(os.path.exists, "fault").values()), "a worker sees the path"
    return ctx.proxy("fault").run("shipped")


def model_path_nobody_sees(ctx):
    return DaskBackend({"connection": ctx.connection}).load(str(ctx.tmp_path / "missing"))


def corrupt_model(ctx):
    return ctx.proxy(ctx.fault_model(corrupt=True))


def unregistered_module_id(ctx):
    path = ctx.fault_model()
    config = ModuleConfig.load(path)
    config["module_id"] = "no-such-module-id"
    config.save(path)
    return DaskBackend({"connection": ctx.connection}).load(path)


def unknown_trainer_key(ctx):
    return DaskModelTrainer({"connection": ctx.connection, "retrys": 2}, "bad")


def initializer_given_a_trainer_key(ctx):
    return DaskModelInitializer({"connection": ctx.connection, "retries": 2}, "bad")


def wrong_type(ctx):
    return DaskModelInitializer({"connection": ctx.connection, "replicas": "two"}, "bad")


def malformed_duration(ctx):
    return DaskModelInitializer({"connection": ctx.connection, "call_timeout": "soon"}, "bad")


def garbage_scheduler_address(ctx):
    return DaskModelTrainer({"connection": {"address": "not an address"}}, "bad")


def unknown_protocol(ctx):
    return DaskModelTrainer({"connection": {"address": "bogus://127.0.0.1:1"}}, "bad")


def unreachable_scheduler(ctx):
    trainer = DaskModelTrainer(
        {"connection": {"address": "tcp://127.0.0.1:1", "timeout": "1s"}}, "bad"
    )
    return trainer.train(FaultModule)


def not_a_module_class(ctx):
    return ctx.trainer().train(dict)


def s3_save_path(ctx):
    return ctx.trainer().train(FaultModule, save_path=S3Path(path="bucket/model"))


def unknown_training_id(ctx):
    return ctx.trainer().get_model_future("no-such-training")


def non_string_training_id(ctx):
    return ctx.trainer().get_model_future(12345)


def cancel_finished_training(ctx):
    future = ctx.finished_training()
    before = future.get_info()
    future.cancel()
    return before, future.get_info()


def load_canceled_training(ctx):
    future = ctx.running_training()
    future.cancel()
    return future.load()


def load_errored_training(ctx):
    future = ctx.trainer().train(FaultModule, fail_with="bad hyperparameter")
    future.wait(20)
    return future.load()


def duplicate_running_external_id(ctx):
    ctx.running_training(external_training_id="bad-input-dup")
    return ctx.trainer().train(FaultModule, external_training_id="bad-input-dup")


def call_after_close(ctx):
    proxy = ctx.proxy()
    proxy.close()
    return proxy.run("too late")


def task_the_module_does_not_have(ctx):
    return ctx.proxy().run_stream("FaultModule has no streaming task")


def module_raises(ctx):
    return ctx.proxy().run("raise:no such label")


def call_longer_than_call_timeout(ctx):
    return ctx.proxy(call_timeout="1s").run("sleep:3")


PAYLOAD_LIMIT = "1MB"
BIG_TEXT = "x" * 2_000_000


def training_payload_over_limit(ctx):
    return ctx.trainer(max_payload_size=PAYLOAD_LIMIT).train(FaultModule, fail_with=BIG_TEXT)


def request_payload_over_limit(ctx):
    proxy = ctx.proxy(max_payload_size=PAYLOAD_LIMIT)
    ctx.notes["proxy"] = proxy
    return proxy.run(BIG_TEXT)


# -- checks on what came back ----------------------------------------------------------------


def is_not_found(*fragments: str):
    def check(err: BaseException, ctx: Ctx) -> None:
        assert isinstance(err, CaikitCoreException)
        assert err.status_code is CaikitCoreStatusCode.NOT_FOUND, err.status_code
        for fragment in fragments:
            assert fragment in err.message, err.message

    return check


def unchanged(result, ctx: Ctx) -> None:
    before, after = result
    assert after.status is before.status is JobStatus.COMPLETED
    assert after.completion_time == before.completion_time
    assert after.errors is None


def names_the_payload(err: BaseException, ctx: Ctx) -> None:
    message = str(err)
    assert "max_payload_size" in message, message
    assert format_bytes(parse_bytes(PAYLOAD_LIMIT)) in message, message  # the limit
    assert "1.9" in message or str(len(BIG_TEXT))[:3] in message, message  # the size
    if "proxy" in ctx.notes:  # refused before sending: the proxy still answers
        assert ctx.notes["proxy"].run("small").label


def answered_from_a_worker(result, ctx: Ctx) -> None:
    assert result.label.isdigit() and int(result.label) != os.getpid()


def is_none(result, ctx: Ctx) -> None:
    assert result is None


# -- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    act: Callable[[Ctx], Any]
    raises: type[BaseException] | None
    match: str | None = None
    within: float = 30.0
    check: Callable[[Any, Ctx], None] | None = None
    marks: tuple = ()


CASES = [
    # training arguments and module classes
    Case(
        "unpicklable training argument",
        unpicklable_argument,
        TypeError,
        r"Training argument 'fail_with' \(lock\) cannot be sent to a Dask worker",
    ),
    Case(
        "module not importable on workers (train)",
        module_not_importable_for_training,
        ImportError,
        r"caller_only_training\.CallerOnly is not importable on \d+ Dask worker",
    ),
    Case(
        "module not importable on workers (load)",
        module_not_importable_for_loading,
        ImportError,
        r"Loading the model on Dask worker .*'caller_only_loading' is not importable",
    ),
    Case("not a module class", not_a_module_class, TypeError, r"dict"),
    Case("S3 save_path", s3_save_path, ValueError, r"S3 output path not supported by this runtime"),
    # resources
    Case(
        "training resources no worker has (resource_timeout 0)",
        training_resources_no_worker_has,
        DaskBackendError,
        r"no Dask worker offers resources \{'TPU': 1\.0\}",
    ),
    Case(
        "loading resources no worker has",
        loading_resources_no_worker_has,
        DaskBackendError,
        r"Cannot place the model: no Dask worker offers resources \{'TPU': 1\.0\}",
    ),
    # model paths and artifacts
    Case(
        "model path only the caller sees (shipped)",
        model_path_only_the_caller_sees,
        None,
        check=answered_from_a_worker,
    ),
    Case("model path nobody sees", model_path_nobody_sees, ValueError, r"No caikit model at .*"),
    Case(
        "corrupt model artifacts",
        corrupt_model,
        ValueError,
        r"Loading the model on Dask worker tcp://.* failed: corrupt artifacts in",
    ),
    Case("unregistered module_id", unregistered_module_id, None, check=is_none),
    # configuration
    Case(
        "unknown config key",
        unknown_trainer_key,
        DaskConfigError,
        r"trainers\.bad\.config\.retrys: unknown key\. Known keys",
    ),
    Case(
        "trainer-only key on an initializer",
        initializer_given_a_trainer_key,
        DaskConfigError,
        r"initializers\.bad\.config\.retries: unknown key",
    ),
    Case(
        "wrong type",
        wrong_type,
        DaskConfigError,
        r"initializers\.bad\.config\.replicas: expected int, got str",
    ),
    Case(
        "malformed duration",
        malformed_duration,
        DaskConfigError,
        r"call_timeout: 'soon' is not a duration",
    ),
    Case(
        "garbage scheduler address",
        garbage_scheduler_address,
        DaskConfigError,
        r"connection\.address: 'not an address' is not a scheduler address",
    ),
    Case(
        "unknown protocol",
        unknown_protocol,
        DaskConfigError,
        r"unknown protocol 'bogus'",
    ),
    Case(
        "unreachable scheduler",
        unreachable_scheduler,
        DaskBackendError,
        r"Could not reach the Dask scheduler at tcp://127\.0\.0\.1:1 within 1s",
        within=10,
    ),
    # training ids and lifecycle
    Case(
        "unknown training id",
        unknown_training_id,
        CaikitCoreException,
        check=is_not_found("no-such-training"),
    ),
    Case("training id not a string", non_string_training_id, TypeError, r"training_id"),
    Case("cancel of a finished training", cancel_finished_training, None, check=unchanged),
    Case(
        "load of a canceled training",
        load_canceled_training,
        CaikitCoreException,
        check=is_not_found("was canceled"),
    ),
    Case(
        "load of a training whose module raised",
        load_errored_training,
        ValueError,
        r"^bad hyperparameter$",
    ),
    Case(
        "duplicate external training id (running)",
        duplicate_running_external_id,
        ValueError,
        r"Cannot restart training bad-input-dup that is currently running",
    ),
    # calls
    Case("call after close()", call_after_close, DaskBackendError, r"was closed; load the model"),
    Case(
        "task the module does not have",
        task_the_module_does_not_have,
        AttributeError,
        r"'DaskFaultModule' object has no attribute 'run_stream'",
    ),
    Case("module's own exception", module_raises, KeyError, r"no such label"),
    Case(
        "call longer than call_timeout",
        call_longer_than_call_timeout,
        TimeoutError,
        r"run did not return within call_timeout=1s",
        within=15,
    ),
    Case(
        "training payload over max_payload_size",
        training_payload_over_limit,
        ValueError,
        check=names_the_payload,
    ),
    Case(
        "request payload over max_payload_size",
        request_payload_over_limit,
        ValueError,
        check=names_the_payload,
    ),
]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=c.marks) for c in CASES])
def test_bad_input(case: Case, ctx: Ctx):
    started = time.monotonic()
    if case.raises is None:
        result = call_within(case.within, case.act, ctx)
    else:
        with pytest.raises(case.raises, match=case.match) as caught:
            call_within(case.within, case.act, ctx)
        result = caught.value
    elapsed = time.monotonic() - started
    shown = getattr(result, "message", None) or str(result)
    print(f"\n[bad input] {case.id} ({elapsed:.2f}s): {type(result).__name__}: {shown[:300]}")
    assert elapsed < case.within
    if case.check is not None:
        case.check(result, ctx)


def test_every_row_has_a_unique_id():
    assert len({case.id for case in CASES}) == len(CASES)
