"""Batch scoring: proxy.map over many inputs across two replicas, results in input order."""

import sys

import dask.bag as db
import pytest
from caikit.core.modules import ModuleConfig
from cluster_support import poll
from dask_testlib import save_fault_model

from caikit_dask import DaskModelInitializer
from caikit_dask.errors import BatchInputError
from caikit_dask.example import EchoWithContext
from caikit_dask.loading.proxy import replica_set_of


@pytest.fixture(scope="module")
def echo(local_cluster, tmp_path_factory):
    """``run(text)`` returns ``"> " + text``: each result says which input it answers."""
    path = str(tmp_path_factory.mktemp("batch") / "echo")
    EchoWithContext.train(prefix="> ").save(path)
    connection = {"address": local_cluster.scheduler_address, "timeout": "20s"}
    model = DaskModelInitializer({"connection": connection, "replicas": 2}, "batch").init(
        ModuleConfig.load(path)
    )
    assert len({r["worker"] for r in model.replicas}) == 2
    yield model
    model.close()


@pytest.fixture(scope="module")
def faulty(local_cluster, tmp_path_factory):
    """``run("raise:x")`` raises KeyError("x") in the model."""
    path = save_fault_model(str(tmp_path_factory.mktemp("batch") / "fault"))
    connection = {"address": local_cluster.scheduler_address, "timeout": "20s"}
    model = DaskModelInitializer({"connection": connection, "replicas": 2}, "batch").init(
        ModuleConfig.load(path)
    )
    yield model
    model.close()


def texts(results):
    return [result.text for result in results]


def test_results_come_back_in_input_order_from_both_replicas(echo):
    channels = [replica.channel for replica in replica_set_of(echo).replicas]
    before = [channel.messages for channel in channels]
    inputs = (f"item {i}" for i in range(3000))  # a generator: no length, read once

    results = echo.map(inputs, progress=False)

    assert texts(results) == [f"> item {i}" for i in range(3000)]
    sent = [channel.messages - start for channel, start in zip(channels, before, strict=True)]
    assert all(count > 0 for count in sent), f"messages per replica: {sent}"
    assert sum(sent) < 3000 / 4, f"{sum(sent)} messages for 3000 calls: calls not coalesced"


def test_extra_arguments_reach_every_call(echo):
    results = echo.map(["a", "b"], kwargs={"context": {"x-echo": "shared"}}, progress=False)
    assert texts(results) == ["> a", "> b"]
    assert [r.metadata_value for r in results] == ["shared", "shared"]
    results = echo.map(["a"], args=("x-other", {"x-other": "positional"}), progress=False)
    assert results[0].metadata_value == "positional"


def test_inputs_in_flight_stay_within_the_window(echo):
    seen = []

    def inputs():
        for i in range(400):
            seen.append(sum(replica["outstanding"] for replica in echo.replicas))
            yield f"item {i}"

    results = echo.map(inputs(), progress=False, max_in_flight=8)
    assert texts(results) == [f"> item {i}" for i in range(400)]
    assert max(seen) <= 8, f"up to {max(seen)} calls in flight with max_in_flight=8"
    poll(lambda: all(r["outstanding"] == 0 for r in echo.replicas), 5, what="calls all answered")


def test_a_bag_gives_a_list_in_input_order(echo):
    bag = db.from_sequence([f"b{i}" for i in range(500)], npartitions=7)
    assert texts(echo.map(bag, progress=False)) == [f"> b{i}" for i in range(500)]


def test_a_dataframe_column_gives_a_series_with_its_index_and_name(echo):
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")
    index = [f"row{i}" for i in range(300)]
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(300)], "n": range(300)}, index=index)
    column = dd.from_pandas(frame, npartitions=5)["text"]

    expected = column.compute(scheduler="sync")  # from_pandas sorts by the index

    scored = echo.map(column, progress=False)

    assert isinstance(scored, pd.Series)
    assert scored.name == "text" and list(scored.index) == list(expected.index)
    assert texts(scored) == [f"> {text}" for text in expected]
    with pytest.raises(TypeError, match=r"frame\['column'\]"):
        echo.map(dd.from_pandas(frame, npartitions=2), progress=False)

    scored = echo.map(frame["text"], progress=False)  # a pandas column: the same shape back
    assert list(scored.index) == index and scored.name == "text"
    assert texts(scored) == [f"> t{i}" for i in range(300)]


def test_a_failing_input_is_named_and_keeps_the_model_exception(faulty):
    inputs = ["ok"] * 50 + ["raise:bad input"] + ["ok"] * 200
    with pytest.raises(BatchInputError, match=r"input 50 \('raise:bad input'\): KeyError") as info:
        faulty.map(inputs, progress=False)
    assert info.value.index == 50
    assert isinstance(info.value.__cause__, KeyError)
    poll(lambda: all(r["outstanding"] == 0 for r in faulty.replicas), 5, what="counts released")
    results = faulty.map(["ok"] * 100, progress=False)
    assert len({result.label for result in results}) == 2, "both replicas (worker pids) answered"


def test_an_input_past_call_timeout_is_named(local_cluster, tmp_path):
    path = save_fault_model(str(tmp_path / "fault"))
    connection = {"address": local_cluster.scheduler_address, "timeout": "20s"}
    model = DaskModelInitializer({"connection": connection, "call_timeout": "1s"}, "slow").init(
        ModuleConfig.load(path)
    )
    with pytest.raises(BatchInputError, match=r"input 1 \('sleep:3'\).*call_timeout=1s") as info:
        model.map(["ok", "sleep:3", "ok"], progress=False)
    assert isinstance(info.value.__cause__, TimeoutError)
    model.close()


def test_progress_bar_in_the_terminal(echo, capsys):
    echo.map([f"p{i}" for i in range(250)])
    bar = capsys.readouterr().err
    assert "EchoWithContext.run" in bar and "100%" in bar and "250/250" in bar

    echo.map([f"p{i}" for i in range(250)], progress=False)
    assert capsys.readouterr().err == ""


def test_without_tqdm_there_is_no_bar_and_no_error(echo, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)  # what `import tqdm.auto` meets if absent
    assert texts(echo.map(["a", "b"])) == ["> a", "> b"]
    assert capsys.readouterr().err == ""


def test_empty_inputs_give_empty_results(echo):
    assert echo.map([], progress=False) == []
    assert echo.map(iter(()), progress=False) == []
    assert echo.map(db.from_sequence([], npartitions=1), progress=False) == []


def test_bad_arguments_are_named_at_the_call(echo):
    with pytest.raises(TypeError, match="iterable of inputs.*not str"):
        echo.map("one text", progress=False)
    with pytest.raises(ValueError, match=r"\['run'\], not 'train'"):
        echo.map(["a"], method="train", progress=False)
    with pytest.raises(ValueError, match="max_in_flight must be a positive int"):
        echo.map(["a"], max_in_flight=0, progress=False)


def test_a_task_method_named_map_keeps_its_name_on_the_proxy():
    import caikit.core

    from caikit_dask.example import ClassificationResult, ExampleTextClassificationTask
    from caikit_dask.loading.proxy import DaskModelProxy, proxy_class_for

    @caikit.core.module(
        id="1a7f0c55-2b0e-4f61-9d55-6c1f3d0b9a01",
        name="caikit-dask test module with a map task method",
        version="0.1.0",
        task=ExampleTextClassificationTask,
    )
    class MapsText(caikit.core.ModuleBase):
        @ExampleTextClassificationTask.taskmethod()
        def map(self, text: str) -> ClassificationResult:
            return ClassificationResult(label=text, score=1.0)

    proxy_class = proxy_class_for(MapsText)
    assert proxy_class.map is not DaskModelProxy.map
    assert proxy_class.map.__wrapped__ is MapsText.map
    assert "map" in proxy_class.unary_methods


@pytest.mark.slow
def test_a_replica_killed_mid_map_loses_no_input(process_cluster, tmp_path):
    for name in ("a", "b", "c"):
        process_cluster.add_worker(name)
    EchoWithContext.train(prefix="> ").save(str(tmp_path / "echo"))
    model = DaskModelInitializer(
        {
            "connection": {"address": process_cluster.address},
            "replicas": 2,
            "call_timeout": "30s",
            "health_check_period": "0.5s",
        },
        "batch-kill",
    ).init(ModuleConfig.load(str(tmp_path / "echo")))
    victim = sorted(r["worker"] for r in model.replicas)[0]

    def inputs():
        for i in range(6000):
            if i == 2000:
                process_cluster.kill_worker(process_cluster.worker_name_at(victim))
            yield f"item {i}"

    results = model.map(inputs(), progress=False)

    assert texts(results) == [f"> item {i}" for i in range(6000)]
    assert victim not in {r["worker"] for r in model.replicas if r["alive"]}
    model.close()


def test_map_stays_within_max_queued_calls(local_cluster, tmp_path):
    """The default window never trips the model's own backpressure."""
    path = str(tmp_path / "echo")
    EchoWithContext.train(prefix="> ").save(path)
    connection = {"address": local_cluster.scheduler_address, "timeout": "20s"}
    config = {"connection": connection, "replicas": 1, "max_queued_calls": 2}
    model = DaskModelInitializer(config, "batch-limited").init(ModuleConfig.load(path))
    try:
        results = model.map((f"item {i}" for i in range(500)), progress=False)
        assert texts(results) == [f"> item {i}" for i in range(500)]
    finally:
        model.close()
