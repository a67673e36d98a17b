"""caikit-nlp's EmbeddingModule (embedding, sentence similarity, rerank, tokenization tasks)
bootstrapped from a tiny sentence-transformers model, loaded by DaskModelInitializer into actors
on worker processes, and called through the proxy and through a real caikit.runtime over gRPC
and HTTP: every answer equals a local load's, and is computed on a worker."""

from __future__ import annotations

import grpc
import pytest

pytest.importorskip("caikit_nlp")

from caikit.core.modules import ModuleConfig  # noqa: E402
from caikit.interfaces.nlp import data_model as nlp_dm  # noqa: E402
from caikit_nlp.modules.text_embedding import EmbeddingModule  # noqa: E402
from nlp_support import (  # noqa: E402
    NLP_SERVICE,
    as_plain,
    assert_close,
    assert_served_as_local,
    models_on_workers,
)

from caikit_dask import DaskModelInitializer  # noqa: E402

pytestmark = [pytest.mark.nlp, pytest.mark.slow]

QUERY = "the cat sat on the mat"
SENTENCES = ["a dog ran fast", "the cat is good", "red and blue"]
DOCUMENTS = [{"text": text, "id": index} for index, text in enumerate(SENTENCES)]
TOO_LONG = " ".join(["cat"] * 100)  # over the tiny model's 32-token limit


@pytest.fixture(scope="module")
def embedding_dir(tiny_base_models, tmp_path_factory) -> str:
    """The caikit-nlp way: bootstrap from the sentence-transformers model, save."""
    path = tmp_path_factory.mktemp("embedding") / "embedding"
    EmbeddingModule.bootstrap(str(tiny_base_models["sentence-transformer"])).save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def local_model(embedding_dir) -> EmbeddingModule:
    return EmbeddingModule.load(embedding_dir)


@pytest.fixture(scope="module")
def proxy(local_cluster, embedding_dir):
    connection = {"address": local_cluster.scheduler_address, "timeout": "20s"}
    initializer = DaskModelInitializer({"connection": connection, "replicas": 2}, "nlp-embedding")
    model = initializer.init(ModuleConfig.load(embedding_dir))
    yield model
    model.close()


# Every task method of the module, with the arguments a caller would pass.
TASK_CALLS = {
    "run_embedding": ((QUERY,), {}),
    "run_embeddings": ((SENTENCES,), {}),
    "run_sentence_similarity": ((QUERY, SENTENCES), {}),
    "run_sentence_similarities": (([QUERY, "hello world"], SENTENCES), {}),
    "run_rerank_query": ((QUERY, DOCUMENTS), {"top_n": 2}),
    "run_rerank_queries": (([QUERY, "a dog"], DOCUMENTS), {"return_text": False}),
    "run_tokenizer": ((QUERY,), {}),
}


def test_proxy_has_the_module_identity_and_tasks(proxy):
    assert isinstance(proxy, EmbeddingModule.__mro__[1])  # caikit's ModuleBase
    assert proxy.MODULE_ID == EmbeddingModule.MODULE_ID
    assert type(proxy).tasks == EmbeddingModule.tasks
    assert not any(isinstance(value, EmbeddingModule) for value in vars(proxy).values())


@pytest.mark.parametrize("method", sorted(TASK_CALLS))
def test_every_task_through_the_proxy_equals_a_local_load(
    proxy, local_model, local_cluster, method
):
    args, kwargs = TASK_CALLS[method]
    with local_cluster.get_client() as client:
        before = sum(actor["calls"] for actor in models_on_workers(client, EmbeddingModule))
        remote = getattr(proxy, method)(*args, **kwargs)
        after = models_on_workers(client, EmbeddingModule)
    expected = getattr(local_model, method)(*args, **kwargs)
    assert type(remote) is type(expected)  # caikit's own data-model class
    assert type(remote).__module__.startswith("caikit.interfaces.nlp")
    assert_close(as_plain(remote), as_plain(expected))
    assert sum(actor["calls"] for actor in after) == before + 1  # answered by a worker actor


def test_library_exceptions_cross_with_type_and_message(proxy, local_model):
    for bad_call in (
        lambda model: model.run_embedding(TOO_LONG),  # caikit-nlp's truncation check
        lambda model: model.run_embedding(5),  # caikit's error.type_check
    ):
        with pytest.raises(Exception) as local_error:
            bad_call(local_model)
        with pytest.raises(type(local_error.value)) as remote_error:
            bad_call(proxy)
        assert type(remote_error.value) is type(local_error.value)
        assert str(remote_error.value) == str(local_error.value)


@pytest.fixture(scope="module")
def runtime(nlp_runtime_factory, local_cluster, embedding_dir):
    return nlp_runtime_factory(local_cluster.scheduler_address, {"embedder": embedding_dir})


RUNTIME_CALLS = [
    # (gRPC method, HTTP task, inputs, parameters, local method, local args, local kwargs)
    ("EmbeddingTaskPredict", "embedding", QUERY, {}, "run_embedding", (QUERY,), {}),
    (
        "SentenceSimilarityTaskPredict",
        "sentence-similarity",
        {"source_sentence": QUERY, "sentences": SENTENCES},
        {},
        "run_sentence_similarity",
        (QUERY, SENTENCES),
        {},
    ),
    (
        "RerankTaskPredict",
        "rerank",
        {"query": QUERY, "documents": DOCUMENTS},
        {"top_n": 2},
        "run_rerank_query",
        (QUERY, DOCUMENTS),
        {"top_n": 2},
    ),
]


@pytest.mark.parametrize("call", RUNTIME_CALLS, ids=[call[1] for call in RUNTIME_CALLS])
def test_runtime_serves_through_dask_over_grpc_and_http(runtime, local_model, local_cluster, call):
    grpc_method, http_task, inputs, parameters, method, args, kwargs = call
    expected = getattr(local_model, method)(*args, **kwargs)
    with local_cluster.get_client() as client:
        before = sum(actor["calls"] for actor in models_on_workers(client, EmbeddingModule))
        assert_served_as_local(
            runtime, expected, "embedder", grpc_method, http_task, inputs, parameters
        )
        actors = models_on_workers(client, EmbeddingModule)
    # Both answers came from actors in worker processes, not from the runtime's process.
    assert sum(actor["calls"] for actor in actors) == before + 2
    assert runtime.process.pid not in {actor["pid"] for actor in actors}


def test_runtime_reports_library_errors_like_a_local_model(runtime, local_model):
    with pytest.raises(ValueError) as local_error:
        local_model.run_embedding(TOO_LONG)
    with pytest.raises(grpc.RpcError) as grpc_error:
        runtime.grpc_call(
            f"{NLP_SERVICE}/EmbeddingTaskPredict", {"text": TOO_LONG}, model_id="embedder"
        )
    assert grpc_error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(local_error.value) in grpc_error.value.details()
    response = runtime.http_predict("embedding", "embedder", TOO_LONG)
    assert response.status_code == 400, response.text
    assert str(local_error.value) in response.text


def test_results_are_caikit_nlp_data_model_objects(proxy):
    result = proxy.run_rerank_query(QUERY, DOCUMENTS, top_n=1)
    assert isinstance(result, nlp_dm.RerankResult)
    assert isinstance(result.result.scores[0], nlp_dm.RerankScore)
    assert result.result.scores[0].document["text"] in SENTENCES
