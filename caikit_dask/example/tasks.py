"""Tasks of the example library (the runtime generates one RPC per task and streaming flavour)."""

# caikit compares method annotations with these typing generics.
# ruff: noqa: UP035
from typing import Iterable

from caikit.core import TaskBase, task

from .data_model import ClassificationResult, ClassificationStreamResult, EchoResult


@task(
    unary_parameters={"text": str},
    streaming_parameters={"text_stream": Iterable[str]},
    unary_output_type=ClassificationResult,
    streaming_output_type=Iterable[ClassificationStreamResult],
)
class ExampleTextClassificationTask(TaskBase):
    """Assign a label to a text; streaming flavours label it chunk by chunk."""


@task(
    unary_parameters={"text": str},
    unary_output_type=EchoResult,
)
class EchoTask(TaskBase):
    """Echo a text back, reporting what the request context carried."""
