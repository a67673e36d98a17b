"""caikit-nlp classification on CPU with a tiny local BERT: ``SequenceClassification``
(text classification) and ``FilteredSpanClassification`` built from it and a
``RegexSentenceSplitter`` (token classification, with a bidirectional-streaming task), served
through DASK: the proxy, and a real caikit.runtime over gRPC (unary and bidi) and HTTP.
``FilteredSpanClassification.load`` and its sentence splitter's take only a path: the worker-side
load falls back to it, as caikit's LOCAL initializer does."""

from __future__ import annotations

import pytest

pytest.importorskip("caikit_nlp")

from caikit.core.data_model import DataStream  # noqa: E402
from caikit.core.modules import ModuleConfig  # noqa: E402
from caikit_nlp.modules.text_classification import SequenceClassification  # noqa: E402
from caikit_nlp.modules.token_classification import FilteredSpanClassification  # noqa: E402
from caikit_nlp.modules.tokenization import RegexSentenceSplitter  # noqa: E402
from nlp_support import (  # noqa: E402
    NLP_SERVICE,
    as_grpc_json,
    as_plain,
    assert_close,
    assert_served_as_local,
)

from caikit_dask import DaskModelInitializer  # noqa: E402

pytestmark = [pytest.mark.nlp, pytest.mark.slow]

SENTENCE_REGEX = r"[^.!?\s][^.!?\n]*[.!?]?"
TEXT = "the cat sat on the mat. a dog ran fast! hello world"
CHUNKS = ["the cat sat ", "on the mat. a dog", " ran fast! hello world."]


@pytest.fixture(scope="module")
def model_dirs(tiny_base_models, tmp_path_factory) -> dict[str, str]:
    """Both modules bootstrapped the caikit-nlp way and saved."""
    root = tmp_path_factory.mktemp("classification")
    classifier = SequenceClassification.bootstrap(str(tiny_base_models["sequence-classifier"]))
    spans = FilteredSpanClassification.bootstrap(
        "en", RegexSentenceSplitter.bootstrap(SENTENCE_REGEX), classifier, default_threshold=0.0
    )
    dirs = {"classifier": str(root / "classifier"), "spans": str(root / "spans")}
    classifier.save(dirs["classifier"])
    spans.save(dirs["spans"])
    return dirs


@pytest.fixture(scope="module")
def initializer(local_cluster) -> DaskModelInitializer:
    connection = {"address": local_cluster.scheduler_address, "timeout": "20s"}
    return DaskModelInitializer({"connection": connection, "call_timeout": "120s"}, "nlp-clf")


def test_sequence_classification_through_the_proxy(initializer, model_dirs):
    local = SequenceClassification.load(model_dirs["classifier"])
    proxy = initializer.init(ModuleConfig.load(model_dirs["classifier"]))
    try:
        assert_close(as_plain(proxy.run(TEXT)), as_plain(local.run(TEXT)))
        assert {c.label for c in proxy.run(TEXT).results} == {"calm", "alarm"}
    finally:
        proxy.close()


def test_span_classification_bidi_stream_through_the_proxy(initializer, model_dirs):
    local = FilteredSpanClassification.load(model_dirs["spans"])
    proxy = initializer.init(ModuleConfig.load(model_dirs["spans"]))
    try:
        assert_close(as_plain(proxy.run(TEXT)), as_plain(local.run(TEXT)))
        remote_parts = [
            as_plain(part) for part in proxy.run_bidi_stream(DataStream.from_iterable(CHUNKS))
        ]
        local_parts = [
            as_plain(part) for part in local.run_bidi_stream(DataStream.from_iterable(CHUNKS))
        ]
        assert len(remote_parts) > 1  # a real stream: one result per span and label
        assert_close(remote_parts, local_parts)
    finally:
        proxy.close()


@pytest.fixture(scope="module")
def runtime(nlp_runtime_factory, local_cluster, model_dirs):
    """Models load on their first request, so one that fails to load fails only its tests."""
    lazy = {"runtime": {"lazy_load_local_models": True, "lazy_load_poll_period_seconds": 3600}}
    return nlp_runtime_factory(local_cluster.scheduler_address, model_dirs, config=lazy)


def test_text_classification_served_by_the_runtime(runtime, model_dirs):
    classifier = SequenceClassification.load(model_dirs["classifier"])
    assert_served_as_local(
        runtime,
        classifier.run(TEXT),
        "classifier",
        "TextClassificationTaskPredict",
        "text-classification",
        TEXT,
    )


def test_token_classification_and_its_bidi_stream_served_by_the_runtime(runtime, model_dirs):
    spans = FilteredSpanClassification.load(model_dirs["spans"])
    assert_served_as_local(
        runtime,
        spans.run(TEXT),
        "spans",
        "TokenClassificationTaskPredict",
        "token-classification",
        TEXT,
    )

    replies = runtime.grpc_bidi(
        f"{NLP_SERVICE}/BidiStreamingTokenClassificationTaskPredict",
        [{"text_stream": chunk} for chunk in CHUNKS],
        model_id="spans",
    )
    expected = spans.run_bidi_stream(DataStream.from_iterable(CHUNKS))
    assert_close(replies, [as_grpc_json(part) for part in expected])
