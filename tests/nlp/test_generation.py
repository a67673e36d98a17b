"""caikit-nlp text generation on CPU with a tiny local GPT-2: ``TextGeneration`` fine-tuned
through DaskModelTrainer on a worker, then served through DASK (proxy, gRPC, HTTP);
``PeftPromptTuning`` (the module with a server-streaming task) trained through DaskModelTrainer
and served with its stream through DASK.

caikit-nlp's generation modules' ``load`` takes only a path (``os.path.join(model_path, ...)``):
the worker-side load falls back to it when the ``ModuleConfig`` load fails, as caikit's LOCAL
initializer does."""

from __future__ import annotations

import os

import grpc
import pytest

pytest.importorskip("caikit_nlp")

import torch  # noqa: E402
from caikit.core.data_model import DataStream  # noqa: E402
from caikit.core.modules import ModuleConfig  # noqa: E402
from caikit.interfaces.nlp import data_model as nlp_dm  # noqa: E402
from caikit_nlp.data_model import GenerationTrainRecord, TuningConfig  # noqa: E402
from caikit_nlp.modules.text_generation import PeftPromptTuning, TextGeneration  # noqa: E402
from nlp_support import (  # noqa: E402
    NLP_SERVICE,
    as_http_json,
    as_plain,
    assert_close,
    assert_served_as_local,
    models_on_workers,
)

from caikit_dask import DaskModelInitializer, DaskModelTrainer  # noqa: E402

pytestmark = [pytest.mark.nlp, pytest.mark.slow]

PROMPT = "the cat"
GENERATE = {"max_new_tokens": 4}
RECORDS = [
    ("the cat", "sat on the mat"),
    ("a dog", "ran fast"),
    ("hello", "world"),
    ("red or blue", "green"),
]
SHORT = {"max_source_length": 16, "max_target_length": 16, "batch_size": 2}


def records() -> DataStream:
    return DataStream.from_iterable([GenerationTrainRecord(input=i, output=o) for i, o in RECORDS])


@pytest.fixture(scope="module")
def connection(local_cluster) -> dict:
    return {"address": local_cluster.scheduler_address, "timeout": "20s"}


@pytest.fixture(scope="module")
def trainer(connection) -> DaskModelTrainer:
    return DaskModelTrainer({"connection": connection}, "nlp-trainer")


@pytest.fixture(scope="module")
def initializer(connection) -> DaskModelInitializer:
    return DaskModelInitializer({"connection": connection, "call_timeout": "120s"}, "nlp-gen")


@pytest.fixture(scope="module")
def fine_tuned(trainer, tiny_base_models, tmp_path_factory):
    """TextGeneration fine-tuned on a worker through DaskModelTrainer, saved by the worker."""
    save_path = str(tmp_path_factory.mktemp("fine-tuned") / "generator")
    future = trainer.train(
        TextGeneration,
        str(tiny_base_models["causal-lm"]),
        records(),
        num_epochs=2,
        accumulate_steps=1,
        torch_dtype="float32",
        save_path=save_path,
        **SHORT,
    )
    future.wait()
    return future


def prompt_tune(tiny_base_models) -> PeftPromptTuning:
    return PeftPromptTuning.train(
        str(tiny_base_models["causal-lm"]),
        records(),
        TuningConfig(num_virtual_tokens=4, prompt_tuning_init_text="hello world"),
        num_epochs=3,
        device="cpu",
        torch_dtype="float32",
        accumulate_steps=1,
        **SHORT,
    )


@pytest.fixture(scope="module")
def prompt_tuned_dir(tiny_base_models, tmp_path_factory) -> str:
    """PeftPromptTuning saved with its base model (``save_base_model=True``), the only form
    caikit-nlp loads back."""
    path = str(tmp_path_factory.mktemp("prompt-tuned") / "prompt-tuned")
    prompt_tune(tiny_base_models).save(path, save_base_model=True)
    return path


def test_text_generation_trains_on_a_worker(fine_tuned):
    info = fine_tuned.get_info()
    assert info.status.name == "COMPLETED", info.errors
    trained = fine_tuned.load()  # shipped back from the worker
    assert isinstance(trained, TextGeneration)
    from_disk = TextGeneration.load(fine_tuned.save_path)  # what the worker saved
    assert trained.run(PROMPT, **GENERATE).to_dict() == from_disk.run(PROMPT, **GENERATE).to_dict()


def test_dask_initializer_loads_a_module_whose_load_takes_a_path(initializer, fine_tuned):
    model_config = ModuleConfig.load(fine_tuned.save_path)
    with pytest.raises(TypeError):  # TextGeneration.load joins its argument as a path
        TextGeneration.load(model_config)
    proxy = initializer.init(model_config)
    try:
        assert proxy.run(PROMPT, **GENERATE).generated_text
    finally:
        proxy.close()


def test_fine_tuned_model_served_through_the_proxy(initializer, fine_tuned, local_cluster):
    local = TextGeneration.load(fine_tuned.save_path)
    proxy = initializer.init(ModuleConfig.load(fine_tuned.save_path))
    try:
        with local_cluster.get_client() as client:
            remote = proxy.run(PROMPT, **GENERATE)
            assert [a["calls"] for a in models_on_workers(client, TextGeneration)] == [1]
        assert isinstance(remote, nlp_dm.GeneratedTextResult)
        assert remote.to_dict() == local.run(PROMPT, **GENERATE).to_dict()
        assert proxy.run_tokenizer(PROMPT).to_dict() == local.run_tokenizer(PROMPT).to_dict()
        with pytest.raises(TypeError) as local_error:
            local.run_tokenizer(7)
        with pytest.raises(TypeError) as remote_error:
            proxy.run_tokenizer(7)
        assert str(remote_error.value) == str(local_error.value)
    finally:
        proxy.close()


def test_prompt_tuning_streams_through_the_proxy(initializer, prompt_tuned_dir):
    local = PeftPromptTuning.load(prompt_tuned_dir)
    proxy = initializer.init(ModuleConfig.load(prompt_tuned_dir))
    try:
        stream = proxy.run_stream_out(PROMPT, **GENERATE)
        remote_parts = [as_plain(part) for part in stream]
        local_parts = [as_plain(part) for part in local.run_stream_out(PROMPT, **GENERATE)]
        assert remote_parts == local_parts and remote_parts
        assert as_plain(proxy.run(PROMPT, **GENERATE)) == as_plain(local.run(PROMPT, **GENERATE))
        # caikit-nlp's local prompt tuning does not tokenize: its NotImplementedError crosses.
        with pytest.raises(NotImplementedError, match="Tokenization not implemented for local"):
            proxy.run_tokenizer(PROMPT)
    finally:
        proxy.close()


@pytest.fixture(scope="module")
def prompt_tuned_on_worker(trainer, tiny_base_models, tmp_path_factory):
    save_path = str(tmp_path_factory.mktemp("prompt-vectors") / "prompt-vectors")
    future = trainer.train(
        PeftPromptTuning,
        str(tiny_base_models["causal-lm"]),
        records(),
        TuningConfig(num_virtual_tokens=4, prompt_tuning_init_text="hello world"),
        num_epochs=1,
        device="cpu",
        torch_dtype="float32",
        save_path=save_path,
        **SHORT,
    )
    future.wait()
    return future


def test_prompt_tuning_save_path_holds_only_prompt_vectors(prompt_tuned_on_worker):
    """caikit-nlp's default ``save`` (what every trainer calls, caikit's LOCAL one too) writes
    only the prompt vectors, for TGIS, and its ``load`` refuses that: such a save_path can be
    served by no local initializer, DASK or LOCAL."""
    assert prompt_tuned_on_worker.get_info().status.name == "COMPLETED"
    with pytest.raises(ValueError, match="base_model not provided"):
        PeftPromptTuning.load(prompt_tuned_on_worker.save_path)


def test_prompt_tuning_trained_through_dask_comes_back(prompt_tuned_on_worker):
    """Its archive can't be loaded back, so the worker sends the model pickled: ``load()``
    returns the trained model, as caikit's LOCAL trainer does."""
    model = prompt_tuned_on_worker.load()
    assert isinstance(model, PeftPromptTuning)
    assert model.run(PROMPT, **GENERATE).generated_text
    # The very prompt vectors the worker trained and saved.
    saved = torch.load(os.path.join(prompt_tuned_on_worker.save_path, "decoder.pt"))
    vectors = PeftPromptTuning.get_exportable_prompt_vectors(
        model.model, model.tuning_type, model.output_model_types
    )
    assert any(v is not None and torch.equal(v, saved) for v in vectors.values())


@pytest.fixture(scope="module")
def generation_runtime(nlp_runtime_factory, local_cluster, fine_tuned, prompt_tuned_dir):
    """Started on first use (inside the test, so a failing load is the test's outcome)."""
    started = []

    def get():
        if not started:
            models = {"generator": fine_tuned.save_path, "prompt-tuned": prompt_tuned_dir}
            started.append(nlp_runtime_factory(local_cluster.scheduler_address, models))
        return started[0]

    return get


def test_fine_tuned_model_served_by_the_runtime(generation_runtime, fine_tuned):
    runtime = generation_runtime()
    expected = TextGeneration.load(fine_tuned.save_path).run(PROMPT, **GENERATE)
    assert_served_as_local(
        runtime,
        expected,
        "generator",
        "TextGenerationTaskPredict",
        "text-generation",
        PROMPT,
        GENERATE,
    )


def test_prompt_tuning_stream_over_the_runtime(generation_runtime, prompt_tuned_dir):
    """caikit-nlp 0.5.15's local ``run_stream_out`` (``generate_text_func_stream``) runs the
    whole generation, then yields one part per output sequence whose ``generated_text`` is that
    sequence decoded token by token: a list of strings where its data model declares ``str``.
    No protobuf can carry that, so gRPC answers INTERNAL (at once, no hang), while HTTP, which
    writes JSON, streams exactly the local parts."""
    runtime = generation_runtime()
    local_parts = list(PeftPromptTuning.load(prompt_tuned_dir).run_stream_out(PROMPT, **GENERATE))
    assert len(local_parts) == 1 and isinstance(local_parts[0].generated_text, list)
    with pytest.raises((TypeError, ValueError)):
        local_parts[0].to_proto()  # the library's own object can't become a message
    with pytest.raises(grpc.RpcError) as error:
        runtime.grpc_stream(
            f"{NLP_SERVICE}/ServerStreamingTextGenerationTaskPredict",
            {"text": PROMPT, **GENERATE},
            model_id="prompt-tuned",
        )
    assert error.value.code() == grpc.StatusCode.INTERNAL
    events = runtime.http_stream("text-generation", "prompt-tuned", PROMPT, GENERATE)
    assert [event for event, _ in events] == ["message"] * len(local_parts)
    assert_close([data for _, data in events], [as_http_json(part) for part in local_parts])
    # The unary task of the same model works over both protocols.
    expected = PeftPromptTuning.load(prompt_tuned_dir).run(PROMPT, **GENERATE)
    assert_served_as_local(
        runtime,
        expected,
        "prompt-tuned",
        "TextGenerationTaskPredict",
        "text-generation",
        PROMPT,
        GENERATE,
    )
