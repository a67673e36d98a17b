"""The example TextClassifier trained, saved, loaded and run through real caikit."""

import ctypes
import itertools
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path

import caikit
import numpy as np
import pytest
from caikit.core.data_model import DataStream

from caikit_dask.example import (
    TEXT_CLASSIFIER_MODULE_ID,
    ClassificationResult,
    ClassificationStreamResult,
    TextClassifier,
    TextTrainingExample,
    load_examples,
)


@pytest.fixture(scope="module")
def model():
    return TextClassifier.train()


def _accuracy(model, examples):
    return np.mean([model.run(e.text).label == e.label for e in examples])


def test_bundled_dataset_is_small_balanced_and_labelled():
    examples = load_examples()
    assert 100 <= len(examples) <= 300
    assert all(isinstance(e, TextTrainingExample) and e.text for e in examples)
    labels = [e.label for e in examples]
    assert sorted(set(labels)) == ["negative", "positive"]
    assert labels.count("positive") == labels.count("negative")


def test_train_on_bundled_data_is_accurate(model):
    assert model.labels == ["negative", "positive"]
    assert _accuracy(model, load_examples()) > 0.8
    assert model.training_metrics["accuracy"] > 0.8
    assert model.training_metrics["n_examples"] == len(load_examples())


def test_run_returns_a_distribution(model):
    result = model.run("The staff were lovely and the food was excellent.")
    assert isinstance(result, ClassificationResult)
    assert result.label == "positive"
    assert [s.label for s in result.scores][0] == result.label
    assert result.score == pytest.approx(result.scores[0].score)
    assert sum(s.score for s in result.scores) == pytest.approx(1.0)
    assert model.run("Rude staff, dirty room, awful food.").label == "negative"
    # Words never seen still give a valid (bias-only) answer.
    assert sum(model.predict_proba("zzz qqq").values()) == pytest.approx(1.0)


@pytest.mark.parametrize(
    "shape",
    [
        lambda t, lab: (t, lab),
        lambda t, lab: {"text": t, "label": lab},
        lambda t, lab: TextTrainingExample(text=t, label=lab),
    ],
    ids=["tuple", "dict", "dataobject"],
)
def test_train_accepts_lists_and_datastreams(shape):
    data = [shape(e.text, e.label) for e in load_examples()]
    from_list = TextClassifier.train(data, epochs=30)
    from_stream = TextClassifier.train(DataStream.from_iterable(data), epochs=30)
    np.testing.assert_array_equal(from_list.weights, from_stream.weights)
    assert _accuracy(from_stream, load_examples()) > 0.8


def test_train_rejects_bad_input():
    with pytest.raises(ValueError):
        TextClassifier.train([("only one label", "positive")])
    with pytest.raises(TypeError):
        TextClassifier.train(["not a pair"])
    with pytest.raises(ValueError):
        TextClassifier.train(epochs=0)
    with pytest.raises(TypeError, match="unexpected"):
        TextClassifier.train(epochs=1, no_such_option=1)


def test_save_load_round_trip_is_identical(model, tmp_path):
    path = tmp_path / "clf"
    model.save(str(path))
    assert (path / "config.yml").is_file() and (path / TextClassifier.WEIGHTS_FILE).is_file()

    for loaded in (TextClassifier.load(str(path)), caikit.load(str(path))):
        assert type(loaded) is TextClassifier
        assert loaded.MODULE_ID == TEXT_CLASSIFIER_MODULE_ID
        np.testing.assert_array_equal(loaded.weights, model.weights)
        np.testing.assert_array_equal(loaded.bias, model.bias)
        assert loaded.labels == model.labels and loaded.ngrams == model.ngrams
        assert loaded.training_metrics == pytest.approx(model.training_metrics)
        for example in load_examples()[:40]:
            assert loaded.run(example.text).to_dict() == model.run(example.text).to_dict()


def test_saved_model_predicts_the_same_in_another_process(model, tmp_path):
    """Features must not depend on the per-process string hash seed (Dask workers differ)."""
    model.save(str(tmp_path / "clf"))
    texts = [e.text for e in load_examples()[:20]]
    script = (
        "import json, sys, caikit, caikit_dask.example\n"
        "m = caikit.load(sys.argv[1])\n"
        "print(json.dumps([m.run(t).to_dict() for t in json.loads(sys.argv[2])]))\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")]
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "clf"), json.dumps(texts)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    ).stdout
    assert json.loads(out.strip().splitlines()[-1]) == [model.run(t).to_dict() for t in texts]


def test_as_bytes_round_trip(model):
    loaded = caikit.core.load(model.as_bytes())
    assert isinstance(loaded, TextClassifier)
    np.testing.assert_array_equal(loaded.weights, model.weights)
    text = "Great battery life but the screen is dim."
    assert loaded.run(text).to_dict() == model.run(text).to_dict()


def test_results_and_model_pickle(model):
    result = model.run("A lovely evening.")
    assert pickle.loads(pickle.dumps(result)).to_dict() == result.to_dict()
    item = next(iter(model.run_stream("Nice. Bad.")))
    assert pickle.loads(pickle.dumps(item)).to_dict() == item.to_dict()
    clone = pickle.loads(pickle.dumps(model))
    assert clone.run("A lovely evening.").to_dict() == result.to_dict()


def test_big_n_features_sizes_the_weight_matrix():
    big = TextClassifier.train(n_features=2**20, epochs=30)
    assert big.weights.shape == (2**20, 2) and big.weights.dtype == np.float32
    assert big.nbytes >= 8 * 2**20
    assert _accuracy(big, load_examples()) > 0.8


def test_weight_noise_only_fills_untouched_rows():
    plain = TextClassifier.train(n_features=2**16, epochs=20)
    noisy = TextClassifier.train(n_features=2**16, epochs=20, weight_noise=1e-3, seed=1)
    learned = np.any(plain.weights != 0, axis=1)
    np.testing.assert_array_equal(noisy.weights[learned], plain.weights[learned])
    untouched = noisy.weights[~learned]
    assert np.count_nonzero(untouched) == untouched.size
    assert 0 < np.abs(untouched).mean() < 1e-2
    text = "The staff were lovely and the food was excellent."
    assert noisy.run(text).label == plain.run(text).label


def test_run_stream_is_lazy_and_per_sentence(model):
    text = "I loved the start. The ending was terrible and boring! Overall it was fine."
    results = list(model.run_stream(text))
    assert [r.index for r in results] == [0, 1, 2]
    assert all(isinstance(r, ClassificationStreamResult) for r in results)
    assert [text[r.start : r.end] for r in results] == [r.text for r in results]
    assert results[0].label == "positive" and results[1].label == "negative"
    assert results[1].cumulative_label in model.labels

    words = list(model.run_stream("so very good", unit="word"))
    assert [w.text for w in words] == ["so", "very", "good"]

    # A text far too long to classify eagerly: the first results must come at once.
    huge = "What a wonderful day. " * 200_000
    started = time.perf_counter()
    first = list(itertools.islice(model.run_stream(huge), 3))
    assert time.perf_counter() - started < 0.5
    assert [r.index for r in first] == [0, 1, 2]


def test_run_stream_validates_unit_at_call_time(model):
    with pytest.raises(ValueError):
        model.run_stream("Fine.", unit="paragraph")


def test_run_stream_delay_spaces_out_results(model):
    stream = iter(model.run_stream("Good. Bad. Good.", delay_per_item=0.1))
    started = time.perf_counter()
    next(stream)
    assert time.perf_counter() - started < 0.1
    assert len(list(stream)) == 2
    assert time.perf_counter() - started >= 0.2


def test_bidi_stream_consumes_input_lazily(model):
    consumed = []

    def source():
        for chunk in ["The food was delicious.", " The staff were rude.", " Awful."]:
            consumed.append(chunk)
            yield chunk

    stream = iter(model.run_bidi_stream(DataStream(source)))
    first = next(stream)
    assert len(consumed) == 1 and first.text == consumed[0] and first.label == "positive"
    rest = list(stream)
    assert [r.index for r in rest] == [1, 2]
    assert rest[-1].label == "negative"
    joined = "".join(consumed)
    assert [joined[r.start : r.end] for r in [first, *rest]] == consumed


def test_progress_callback_reports_and_can_abort():
    seen = []

    def callback(progress):
        seen.append(progress)
        if progress["epoch"] == 3:
            raise KeyboardInterrupt("stop")

    with pytest.raises(KeyboardInterrupt):
        TextClassifier.train(epochs=50, progress_callback=callback)
    assert [p["epoch"] for p in seen] == [1, 2, 3]
    assert set(seen[0]) >= {"epoch", "epochs", "loss", "accuracy", "elapsed"}


class _Cancelled(Exception):
    pass


def test_training_with_sleep_is_interruptible_by_async_exception():
    """The way a Dask worker cancels a running task: an exception raised in its thread."""
    started = threading.Event()
    outcome = {}

    def target():
        try:
            TextClassifier.train(
                epochs=10_000, sleep_per_epoch=1.0, progress_callback=lambda _: started.set()
            )
            outcome["result"] = "finished"
        except _Cancelled:
            outcome["result"] = "cancelled"

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    assert started.wait(5)
    time.sleep(0.05)  # now inside the long sleep of epoch 1
    sent = time.perf_counter()
    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread.ident), ctypes.py_object(_Cancelled)
    )
    thread.join(5)
    assert not thread.is_alive()
    assert outcome["result"] == "cancelled"
    assert time.perf_counter() - sent < 0.5
