"""caikit-nlp modules trained as one training of 2 ranks on 2 worker processes (gloo on CPU,
a tiny local GPT-2), with nothing but caikit-dask's torch.distributed environment:

- ``PeftPromptTuning`` (its loop on accelerate's ``Accelerator``) trains across both: each
  rank steps through half of the batches, and rank 0's model comes back and generates.
  On workers without a GPU, accelerate spans processes only when told to use the CPU
  (``ACCELERATE_USE_CPU=true``, what ``accelerate launch --cpu`` sets): the test sets it
  in the workers' environment, as a deployment of CPU workers would; without it, each
  rank would train alone on all the data;
- ``TextGeneration`` (its loop on transformers' ``Trainer``) trains under DDP across both,
  then fails on rank 1 inside caikit-nlp: after ``trainer.train()`` it reloads the
  checkpoint ``Trainer.save_model`` wrote, and ``Trainer`` writes it on process 0 only
  (``TrainingArguments.should_save``; caikit-nlp 0.5 does not let ``save_on_each_node``
  through), so rank 1 reloads an empty directory. The test pins that outcome down.

After either, the same workers train a world_size 1 ``TextGeneration`` again: the ranks
put their worker processes back (environment, process group, accelerate's state).
"""

from __future__ import annotations

import pytest

pytest.importorskip("caikit_nlp")

from caikit.core.data_model import DataStream  # noqa: E402
from caikit_nlp.data_model import GenerationTrainRecord, TuningConfig  # noqa: E402
from caikit_nlp.modules.text_generation import PeftPromptTuning, TextGeneration  # noqa: E402

from caikit_dask import DaskModelTrainer  # noqa: E402
from caikit_dask.errors import RankFailed  # noqa: E402

pytestmark = [pytest.mark.nlp, pytest.mark.slow]

RECORDS = [
    ("the cat", "sat on the mat"),
    ("a dog", "ran fast"),
    ("hello", "world"),
    ("red or blue", "green"),
]
SHORT = {"max_source_length": 16, "max_target_length": 16, "batch_size": 2}
EPOCHS = 2


def records() -> DataStream:
    return DataStream.from_iterable([GenerationTrainRecord(input=i, output=o) for i, o in RECORDS])


@pytest.fixture(scope="module")
def connection(local_cluster) -> dict:
    return {"address": local_cluster.scheduler_address, "timeout": "20s"}


def trainer(connection, name, world_size):
    return DaskModelTrainer(
        {"connection": connection, "resources": {"GPU": 1}, "world_size": world_size}, name
    )


def text_generation_still_trains_alone(connection, base_model):
    future = trainer(connection, "nlp-after-gang", 1).train(
        TextGeneration,
        base_model,
        records(),
        num_epochs=1,
        accumulate_steps=1,
        torch_dtype="float32",
        **SHORT,
    )
    future.wait(300)
    assert future.get_info().status.name == "COMPLETED", future.get_info().errors


@pytest.fixture
def cpu_workers_for_accelerate(local_cluster):
    """``ACCELERATE_USE_CPU=true`` in every worker process, for the test only."""
    import os

    def set_flag(value):
        if value is None:
            os.environ.pop("ACCELERATE_USE_CPU", None)
        else:
            os.environ["ACCELERATE_USE_CPU"] = value

    with local_cluster.get_client() as client:
        client.run(set_flag, "true")
        try:
            yield
        finally:
            client.run(set_flag, None)


def test_prompt_tuning_trains_across_two_workers(
    connection, tiny_base_models, cpu_workers_for_accelerate
):
    base_model = str(tiny_base_models["causal-lm"])
    future = trainer(connection, "nlp-gang-peft", 2).train(
        PeftPromptTuning,
        base_model,
        records(),
        TuningConfig(num_virtual_tokens=4, prompt_tuning_init_text="hello world"),
        num_epochs=EPOCHS,
        device="cpu",
        torch_dtype="float32",
        accumulate_steps=1,
        **SHORT,
    )
    future.wait(300)
    info = future.get_info()
    assert info.status.name == "COMPLETED", info.errors
    assert len(set(future.training.workers)) == 2
    model = future.load()  # rank 0's
    assert isinstance(model, PeftPromptTuning)
    assert model.run("the cat", max_new_tokens=4).generated_text is not None
    # 4 records in batches of 2 are 2 steps an epoch alone; each of 2 ranks takes 1.
    assert len(model.training_metadata["loss"]) == EPOCHS
    lines = future.logs()
    for rank in range(2):
        assert any(f"[rank {rank}]" in line and "loss" in line for line in lines), lines
    text_generation_still_trains_alone(connection, base_model)


def test_text_generation_trains_under_ddp_then_rank_1_cannot_reload(connection, tiny_base_models):
    base_model = str(tiny_base_models["causal-lm"])
    future = trainer(connection, "nlp-gang-textgen", 2).train(
        TextGeneration,
        base_model,
        records(),
        num_epochs=EPOCHS,
        accumulate_steps=1,
        torch_dtype="float32",
        **SHORT,
    )
    future.wait(300)
    info = future.get_info()
    assert info.status.name == "ERRORED"
    error = info.errors[0]
    assert isinstance(error, RankFailed) and error.rank == 1, error
    assert "Unrecognized model in /tmp" in str(error)  # its own, empty checkpoint directory
    lines = future.logs()
    # Rank 0's Trainer, process 0 of 2, saved its checkpoint and rank 0 reloaded it from its
    # own temporary directory; rank 1's, process 1 of 2, saved nothing there.
    reloaded = [line for line in lines if "[rank 0] HFRBAS: Model /tmp/" in line]
    assert reloaded and "loaded in" in reloaded[0], lines
    text_generation_still_trains_alone(connection, base_model)
