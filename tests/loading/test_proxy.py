"""A model loaded into actors answers through a proxy that caikit treats as the module."""

import gc
import pickle
import threading

import pytest
from caikit.core import ModuleBase
from caikit.core.data_model import DataStream
from caikit.core.modules import ModuleConfig
from cluster_support import actor_keys_on_workers, poll, run_in_threads
from dask_testlib import FaultModule, save_fault_model

from caikit_dask import DaskBackend, DaskModelInitializer
from caikit_dask.errors import DaskBackendError
from caikit_dask.example import (
    ClassificationResult,
    ExampleTextClassificationTask,
    TextClassifier,
)
from caikit_dask.loading.proxy import DaskModelProxy
from caikit_dask.loading.wire.context import ForwardedContext

TEXTS = ["What a wonderful day", "This is terrible and slow", "Great value, I love it"]


@pytest.fixture
def initializer(connection):
    return DaskModelInitializer({"connection": connection, "replicas": 2}, "default")


@pytest.fixture
def proxy(initializer, trained_model_dir):
    model = initializer.init(ModuleConfig.load(trained_model_dir))
    yield model
    model.close()


def test_proxy_has_the_module_identity(proxy):
    assert isinstance(proxy, ModuleBase)
    assert proxy.MODULE_ID == TextClassifier.MODULE_ID
    assert proxy.MODULE_NAME == TextClassifier.MODULE_NAME
    assert proxy.MODULE_VERSION == TextClassifier.MODULE_VERSION
    assert type(proxy).tasks == TextClassifier.tasks
    for flavour in [(False, False), (False, True), (True, True)]:
        assert proxy.get_inference_signature(
            *flavour, ExampleTextClassificationTask
        ) is TextClassifier.get_inference_signature(*flavour, ExampleTextClassificationTask)


def test_caikit_names_the_proxy_by_the_served_class(proxy):
    # caikit.runtime's metering and messages use str(type(model)): the same as with LOCAL
    proxy_class = type(proxy)
    assert str(proxy_class) == str(TextClassifier)
    assert (proxy_class.__module__, proxy_class.__qualname__) == (
        TextClassifier.__module__,
        TextClassifier.__qualname__,
    )
    assert isinstance(proxy, DaskModelProxy) and proxy_class.__name__ == "DaskTextClassifier"
    assert pickle.loads(pickle.dumps(proxy_class)) is proxy_class  # pickled as its making


def test_results_equal_a_local_load(proxy, trained_model_dir):
    local = TextClassifier.load(trained_model_dir)
    for text in TEXTS:
        remote = proxy.run(text)
        assert isinstance(remote, ClassificationResult)
        assert remote.to_dict() == local.run(text).to_dict()


def test_no_weights_in_the_callers_process(proxy):
    assert not any(isinstance(value, TextClassifier) for value in vars(proxy).values())
    assert not hasattr(proxy, "weights")


def test_output_stream_is_lazy_and_complete(proxy, trained_model_dir):
    local = TextClassifier.load(trained_model_dir)
    text = " ".join(f"Sentence number {i} is great." for i in range(300))
    stream = proxy.run_stream(text)
    assert isinstance(stream, DataStream)
    first = next(iter(stream))
    assert first.index == 0
    items = list(proxy.run_stream(text))
    assert [i.to_dict() for i in items] == [i.to_dict() for i in local.run_stream(text)]


def test_input_and_bidirectional_streams(proxy, trained_model_dir):
    local = TextClassifier.load(trained_model_dir)
    inputs = DataStream.from_iterable(TEXTS)
    remote = [r.to_dict() for r in proxy.run_bidi_stream(inputs)]
    expected = [r.to_dict() for r in local.run_bidi_stream(DataStream.from_iterable(TEXTS))]
    assert remote == expected
    generated = DataStream(lambda: (t for t in TEXTS))
    assert len(list(proxy.run_bidi_stream(generated))) == len(TEXTS)


def test_exceptions_reach_the_caller_with_type_and_message(connection, tmp_path):
    path = save_fault_model(str(tmp_path / "fault"))
    model = DaskModelInitializer({"connection": connection}, "x").init(ModuleConfig.load(path))
    with pytest.raises(KeyError, match="boom"):
        model.run("raise:boom")
    assert model.run("ok").score >= 1
    model.close()


def test_replicas_live_in_distinct_worker_processes(connection, tmp_path):
    path = save_fault_model(str(tmp_path / "fault"))
    model = DaskModelInitializer({"connection": connection, "replicas": 2}, "pids").init(
        ModuleConfig.load(path)
    )
    assert len({r["worker"] for r in model.replicas}) == 2
    pids = {model.run("x").label for _ in range(40)}
    assert len(pids) == 2
    model.close()


def test_close_and_garbage_collection_release_the_actors(initializer, trained_model_dir, observer):
    model = initializer.init(ModuleConfig.load(trained_model_dir))
    keys = {r["key"] for r in model.replicas}
    assert len(keys) == 2 and keys <= actor_keys_on_workers(observer)
    model.close()
    poll(lambda: not keys & actor_keys_on_workers(observer), 10, what="release by close")
    with pytest.raises(DaskBackendError, match="was closed; load the model again"):
        model.run("x")

    model = initializer.init(ModuleConfig.load(trained_model_dir))
    keys = {r["key"] for r in model.replicas}
    assert keys <= actor_keys_on_workers(observer)
    del model
    gc.collect()
    poll(lambda: not keys & actor_keys_on_workers(observer), 10, what="release by gc")


def test_concurrent_callers(proxy):
    outcomes = run_in_threads(
        lambda _: [proxy.run("Great value, I love it").label for _ in range(200)], 16, 120
    )
    values = [value for value, _ in outcomes]
    errors = [value for value in values if isinstance(value, BaseException)]
    results = [label for value in values if isinstance(value, list) for label in value]
    assert errors == []
    assert len(results) == 16 * 200
    assert len(set(results)) == 1


def test_calls_spread_by_outstanding_work(connection, tmp_path):
    """A replica busy with a slow call gets no new calls while the other is idle."""
    path = save_fault_model(str(tmp_path / "fault"))
    model = DaskModelInitializer({"connection": connection, "replicas": 2}, "spread").init(
        ModuleConfig.load(path)
    )
    slow = threading.Thread(target=model.run, args=("sleep:2",))
    slow.start()
    poll(lambda: any(r["outstanding"] for r in model.replicas), 5, what="a busy replica")
    busy_pid = None
    pids = {model.run("x").label for _ in range(10)}
    slow.join()
    assert len(pids) == 1, "calls went to the busy replica"
    busy_pid = {model.run("x").label for _ in range(20)} - pids
    assert busy_pid, "the idle replica was never used afterwards"
    model.close()


def test_call_timeout_bounds_a_call(connection, tmp_path):
    path = save_fault_model(str(tmp_path / "fault"))
    model = DaskModelInitializer({"connection": connection, "call_timeout": "1s"}, "t").init(
        ModuleConfig.load(path)
    )
    with pytest.raises(TimeoutError, match="call_timeout"):
        model.run("sleep:3")
    model.close()


def test_runtime_context_is_forwarded_as_metadata(connection, tmp_path):
    from caikit_dask.example import EchoWithContext

    EchoWithContext.train(prefix="> ").save(str(tmp_path / "echo"))
    model = DaskModelInitializer({"connection": connection}, "ctx").init(
        ModuleConfig.load(str(tmp_path / "echo"))
    )
    result = model.run("hi", context=ForwardedContext({"x-echo": "from-caller"}, "grpc"))
    assert result.text == "> hi"
    assert result.has_context and result.metadata_value == "from-caller"
    model.close()


def test_repr_shows_module_and_replicas(proxy):
    text, page = repr(proxy), proxy._repr_html_()
    for worker in (r["worker"] for r in proxy.replicas):
        assert worker in text and worker in page
    assert TextClassifier.MODULE_NAME in text and "<table>" in page


def test_vanished_or_corrupt_model_fails_clearly(initializer, connection, tmp_path):
    with pytest.raises(ValueError, match="No caikit model at"):
        initializer.backend.load(str(tmp_path / "gone"))
    corrupt = save_fault_model(str(tmp_path / "corrupt"), corrupt=True)
    with pytest.raises(ValueError, match="corrupt artifacts"):
        DaskModelInitializer({"connection": connection, "call_timeout": "20s"}, "c").init(
            ModuleConfig.load(corrupt)
        )


def test_dask_backend_load_returns_none_for_unknown_modules(connection, tmp_path):
    path = save_fault_model(str(tmp_path / "fault"))
    config = ModuleConfig.load(path)
    config["module_id"] = "not-a-registered-module"
    config.save(path)
    backend = DaskBackend({"connection": connection})
    assert backend.load(path) is None
    assert FaultModule.MODULE_ID != "not-a-registered-module"


def test_request_over_max_payload_size_is_refused(connection, trained_model_dir):
    model = DaskModelInitializer(
        {"connection": connection, "max_payload_size": "64KiB"}, "payload"
    ).init(ModuleConfig.load(trained_model_dir))
    assert model.run("short and sweet").label
    with pytest.raises(ValueError, match="run request is .* over max_payload_size=64.00 kiB"):
        model.run("x" * 100_000)
    model.close()


def test_an_attached_model_keeps_max_payload_size(connection, trained_model_dir):
    model = DaskModelInitializer({"connection": connection}, "publisher").init(
        ModuleConfig.load(trained_model_dir)
    )
    model.publish("payload-limited")
    attached = DaskBackend({"connection": connection, "max_payload_size": "64KiB"}).attach(
        "payload-limited"
    )
    try:
        assert attached.run("short and sweet").label
        with pytest.raises(ValueError, match="over max_payload_size=64.00 kiB"):
            attached.run("x" * 100_000)
    finally:
        attached.close()
        model.close()


def test_a_closed_model_raises_one_error_whatever_the_timing(connection, tmp_path, caplog):
    """Calls in flight when the model closes, and calls after, fail the same way."""
    path = save_fault_model(str(tmp_path / "fault"))
    model = DaskModelInitializer({"connection": connection, "replicas": 2}, "closing").init(
        ModuleConfig.load(path)
    )
    started = threading.Barrier(7)

    def call_while_closing(_):
        started.wait()
        return model.run("sleep:1")

    callers = threading.Thread(
        target=lambda: outcomes.extend(run_in_threads(call_while_closing, 6))
    )
    outcomes: list = []
    callers.start()
    started.wait()
    poll(lambda: sum(r["outstanding"] for r in model.replicas) == 6, 10, what="calls in flight")
    model.close()
    callers.join(30)
    errors = [value for value, _ in outcomes] + [_raised(lambda: model.run("x"))]
    assert len(errors) == 7
    for err in errors:
        assert isinstance(err, DaskBackendError), repr(err)
        assert f"{FaultModule.MODULE_ID} from {path} was closed; load the model again" in str(err)
    assert caplog.text.count("<DSK60000001E>") == len(errors)


def _raised(call):
    try:
        call()
    except Exception as err:  # noqa: BLE001 - returned to the test
        return err
    return None
