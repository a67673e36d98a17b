"""The example library as caikit.runtime sees it: registration, RPC generation, context."""

import ast
from pathlib import Path

import caikit
import pytest
from caikit.core.registries import module_registry
from caikit.runtime import service_generation

import caikit_dask.example as example
from caikit_dask.example import (
    ECHO_MODULE_ID,
    TEXT_CLASSIFIER_MODULE_ID,
    EchoResult,
    EchoTask,
    EchoWithContext,
    ExampleTextClassificationTask,
    TextClassifier,
)


def test_import_registers_modules_with_caikit():
    assert module_registry()[TEXT_CLASSIFIER_MODULE_ID] is TextClassifier
    assert module_registry()[ECHO_MODULE_ID] is EchoWithContext
    assert TextClassifier.tasks == [ExampleTextClassificationTask]
    assert EchoWithContext.tasks == [EchoTask]
    for name in example.__all__:
        assert hasattr(example, name)


def test_library_does_not_import_dask():
    """Checked statically: it is imported on workers and in plain runtimes alike."""
    package_dir = Path(example.__file__).parent
    for source in package_dir.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in {"dask", "distributed"}, source


def test_inference_signatures_cover_all_streaming_flavours():
    flavours = {
        (sig.method_name, input_streaming, output_streaming)
        for input_streaming, output_streaming, sig in [
            (i, o, TextClassifier.get_inference_signature(i, o))
            for i, o in [(False, False), (False, True), (True, True)]
        ]
    }
    assert flavours == {
        ("run", False, False),
        ("run_stream", False, True),
        ("run_bidi_stream", True, True),
    }
    assert EchoWithContext.get_inference_signature(False, False).context_arg == "context"


def test_runtime_can_generate_rpcs_for_the_library():
    modules = [TextClassifier, EchoWithContext]
    rpcs = service_generation.create_inference_rpcs(modules)
    rpcs += service_generation.create_training_rpcs(modules)
    names = {rpc.name for rpc in rpcs}
    assert names == {
        "ExampleTextClassificationTaskPredict",
        "ServerStreamingExampleTextClassificationTaskPredict",
        "BidiStreamingExampleTextClassificationTaskPredict",
        "EchoTaskPredict",
        "ExampleTextClassificationTaskTextClassifierTrain",
        "EchoTaskEchoWithContextTrain",
    }
    fields = {}
    for rpc in rpcs:
        request = rpc.create_request_data_model("caikit.runtime.CaikitDaskExampleTest")
        fields[rpc.name] = set(request.get_proto_class().DESCRIPTOR.fields_by_name)
    # The request context is injected by the runtime, never a request field.
    assert fields["EchoTaskPredict"] == {"text", "metadata_key"}
    assert fields["BidiStreamingExampleTextClassificationTaskPredict"] == {
        "text_stream",
        "delay_per_item",
    }
    train_rpc = next(r for r in rpcs if r.name.endswith("TextClassifierTrain"))
    train_fields = {name for _, name, _ in train_rpc._inner_request.triples}
    assert {"training_data", "epochs", "sleep_per_epoch", "n_features"} <= train_fields


def test_echo_without_and_with_context(tmp_path):
    echo = EchoWithContext.train(prefix="> ")
    plain = echo.run("hello")
    assert isinstance(plain, EchoResult)
    assert plain.to_dict() == {
        "text": "> hello",
        "has_context": False,
        "context_type": "",
        "metadata_value": "",
    }
    # A mapping stands in for a context that could not cross a process boundary.
    with_ctx = echo.run("hello", metadata_key="X-Echo", context={"x-echo": "abc"})
    assert with_ctx.has_context and with_ctx.metadata_value == "abc"
    assert with_ctx.context_type == "dict"

    echo.save(str(tmp_path / "echo"))
    loaded = caikit.load(str(tmp_path / "echo"))
    assert isinstance(loaded, EchoWithContext) and loaded.prefix == "> "
    assert caikit.core.load(echo.as_bytes()).run("x").text == "> x"


@pytest.mark.parametrize("key", ["x-echo", "X-ECHO"])
def test_echo_metadata_lookup_is_case_insensitive(key):
    assert EchoWithContext().run(
        "t", metadata_key=key, context={"X-Echo": b"v"}
    ).metadata_value == ("v")
