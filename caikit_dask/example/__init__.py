"""caikit-dask example library: a real (small) caikit library for demos, tests and images.

Importing it registers its modules with caikit's module registry. It must not
import dask: it is loaded inside Dask workers and in plain caikit runtimes alike.
"""

from . import data_model, tasks
from .data_model import (
    ClassificationResult,
    ClassificationStreamResult,
    EchoResult,
    LabelScore,
    TextTrainingExample,
)
from .dataset import load_examples
from .echo import ECHO_MODULE_ID, EchoWithContext
from .tasks import EchoTask, ExampleTextClassificationTask
from .text_classifier import TEXT_CLASSIFIER_MODULE_ID, TextClassifier

__all__ = [
    "ECHO_MODULE_ID",
    "TEXT_CLASSIFIER_MODULE_ID",
    "ClassificationResult",
    "ClassificationStreamResult",
    "EchoResult",
    "EchoTask",
    "EchoWithContext",
    "ExampleTextClassificationTask",
    "LabelScore",
    "TextClassifier",
    "TextTrainingExample",
    "data_model",
    "load_examples",
    "tasks",
]
