"""Data model objects of the example library.

They live in their own protobuf package so that caikit.runtime can generate
messages for them next to caikit's own ``caikit_data_model`` types.
"""

# Mirrors caikit's own data model spelling (typing generics).
# ruff: noqa: UP006, UP035
from typing import List

from caikit.core import DataObjectBase, dataobject

PACKAGE = "caikit_dask.example"


@dataobject(package=PACKAGE)
class TextTrainingExample(DataObjectBase):
    """One labelled text, the unit of training data (also what the train RPC streams)."""

    text: str
    label: str


@dataobject(package=PACKAGE)
class LabelScore(DataObjectBase):
    """Probability the classifier gives to one label."""

    label: str
    score: float


@dataobject(package=PACKAGE)
class ClassificationResult(DataObjectBase):
    """Unary result: the best label, its probability and every label's probability."""

    label: str
    score: float
    scores: List[LabelScore]


@dataobject(package=PACKAGE)
class ClassificationStreamResult(DataObjectBase):
    """Streaming result for one chunk (sentence, word or input item).

    ``label``/``score`` judge the chunk alone; ``cumulative_*`` judge everything
    seen so far, which is what a caller watching the stream usually wants.
    """

    index: int
    text: str
    start: int
    end: int
    label: str
    score: float
    cumulative_label: str
    cumulative_score: float


@dataobject(package=PACKAGE)
class EchoResult(DataObjectBase):
    """What :class:`EchoWithContext` saw: the text and whether a request context came along."""

    text: str
    has_context: bool
    context_type: str
    metadata_value: str
