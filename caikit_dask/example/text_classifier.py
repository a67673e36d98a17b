"""A small but real caikit module: multinomial logistic regression on hashed n-grams.

Everything is numpy, so the module trains in well under a second on the bundled
data, yet it exercises what caikit-dask has to carry across processes: a
``train`` that takes a DataStream and runs a cancellable Python loop, weights on
disk (``config.yml`` + ``weights.npz``), and unary, output-streaming and
bidirectional-streaming task methods.
"""

# caikit parses these signatures from raw (unevaluated-by-get_type_hints) annotations and
# compares them with the task's typing generics, so no `from __future__ import annotations`,
# and typing.Iterable/Optional/Union rather than their PEP 585/604 spellings.
# ruff: noqa: UP006, UP007, UP035, UP045

import os
import time
from collections.abc import Iterator
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple, Union

import alog
import numpy as np
from caikit.core import ModuleBase, module
from caikit.core.data_model import DataStream
from caikit.core.exceptions import error_handler
from caikit.core.modules import ModuleConfig, ModuleLoader, ModuleSaver

from .data_model import (
    ClassificationResult,
    ClassificationStreamResult,
    LabelScore,
    TextTrainingExample,
)
from .dataset import load_examples
from .features import CHUNK_UNITS, counts_to_vector, hashed_counts, iter_chunks
from .tasks import ExampleTextClassificationTask

log = alog.use_channel("CKD-EXMPL")
error = error_handler.get(log)

TEXT_CLASSIFIER_MODULE_ID = "be65c4ad-a14e-4b4c-a7f1-748336514110"

DEFAULT_EPOCHS = 100
DEFAULT_LEARNING_RATE = 0.1
DEFAULT_L2 = 1e-4
DEFAULT_N_FEATURES = 2**14
DEFAULT_NGRAMS = 2

# Sleeps are cut into slices this long: an async exception raised in the training
# thread (how a Dask worker cancels a task) is only seen between bytecodes.
_SLEEP_SLICE = 0.02


def interruptible_sleep(seconds: float) -> None:
    """Sleep in short slices so a thread-level async exception interrupts it promptly."""
    deadline = time.monotonic() + seconds
    while (remaining := deadline - time.monotonic()) > 0:
        time.sleep(min(remaining, _SLEEP_SLICE))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


class _Adam:
    """Adam updates in place on a list of float64 arrays."""

    def __init__(self, params: List[np.ndarray], lr: float, beta1=0.9, beta2=0.999, eps=1e-8):
        self.params, self.lr, self.beta1, self.beta2, self.eps = params, lr, beta1, beta2, eps
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]
        self.t = 0

    def step(self, grads: List[np.ndarray]) -> None:
        self.t += 1
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
            m *= self.beta1
            m += (1 - self.beta1) * g
            v *= self.beta2
            v += (1 - self.beta2) * g * g
            m_hat = m / (1 - self.beta1**self.t)
            v_hat = v / (1 - self.beta2**self.t)
            p -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


def _as_example(item: Any) -> Tuple[str, str]:
    """Accept the training-record shapes a user or the runtime may hand us."""
    if isinstance(item, TextTrainingExample):
        return item.text, item.label
    if isinstance(item, dict):
        return item["text"], item["label"]
    if isinstance(item, (tuple, list)) and len(item) == 2:
        return item[0], item[1]
    raise TypeError(
        "training examples must be TextTrainingExample, (text, label) or "
        f"{{'text': ..., 'label': ...}}, got {type(item).__name__}"
    )


def _or_default(value: Any, default: Any) -> Any:
    return default if value is None else value


@module(
    id=TEXT_CLASSIFIER_MODULE_ID,
    name="caikit-dask example text classifier",
    version="0.1.0",
    task=ExampleTextClassificationTask,
)
class TextClassifier(ModuleBase):
    """Sentiment (or any label) classifier over hashed word 1..n-grams."""

    WEIGHTS_FILE = "weights.npz"

    def __init__(
        self,
        weights: np.ndarray,
        bias: np.ndarray,
        labels: List[str],
        ngrams: int = DEFAULT_NGRAMS,
        training_metrics: Optional[Dict[str, Any]] = None,
    ):
        super().__init__()
        error.value_check(
            "<CKD21873402E>",
            weights.ndim == 2 and weights.shape[1] == len(labels) == bias.shape[0],
            "weights {} / bias {} do not match {} labels",
            weights.shape,
            bias.shape,
            len(labels),
        )
        self._weights = weights
        self._bias = bias
        self._labels = list(labels)
        self._ngrams = int(ngrams)
        self.training_metrics = dict(training_metrics or {})

    # -- introspection ---------------------------------------------------------

    @property
    def labels(self) -> List[str]:
        return list(self._labels)

    @property
    def n_features(self) -> int:
        return int(self._weights.shape[0])

    @property
    def ngrams(self) -> int:
        return self._ngrams

    @property
    def weights(self) -> np.ndarray:
        """The (n_features, n_labels) float32 matrix; big when trained with a big n_features."""
        return self._weights

    @property
    def bias(self) -> np.ndarray:
        return self._bias

    @property
    def nbytes(self) -> int:
        return int(self._weights.nbytes + self._bias.nbytes)

    # -- training --------------------------------------------------------------

    @classmethod
    def train(
        cls,
        training_data: DataStream[TextTrainingExample] = None,
        epochs: int = DEFAULT_EPOCHS,
        learning_rate: float = DEFAULT_LEARNING_RATE,
        l2: float = DEFAULT_L2,
        n_features: int = DEFAULT_N_FEATURES,
        ngrams: int = DEFAULT_NGRAMS,
        sleep_per_epoch: float = 0.0,
        weight_noise: float = 0.0,
        seed: int = 0,
        **kwargs: Any,
    ) -> "TextClassifier":
        """Fit by full-batch Adam, one Python-level iteration per epoch.

        ``training_data`` may be a DataStream or any iterable of
        TextTrainingExample, (text, label) pairs or {"text", "label"} dicts;
        None means the bundled sentiment dataset.

        Optimisation runs on the compact set of feature buckets that occur
        in the data, so its cost does not grow with ``n_features``; only the
        final weight matrix is n_features x n_labels (float32). That is the
        knob for memory benchmarks: ``n_features=26_000_000`` with two labels
        gives a ~200 MB model.

        ``sleep_per_epoch`` stretches training so tests can cancel it midway.

        ``weight_noise`` (> 0, e.g. 1e-3) fills the weight rows no example
        touched with seeded Gaussian noise of that scale. A big matrix is
        otherwise almost all zeros, which zip/compression would shrink to
        nothing; noise keeps its shipped size equal to its memory size, for
        honest transfer benchmarks. Learned rows are unaffected.

        The only extra keyword is ``progress_callback``: called with a dict per
        epoch (epoch, epochs, loss, accuracy, elapsed); raising from it aborts
        training. It is taken through ``**kwargs`` because caikit 0.29's train
        RPC generation chokes on a non-protobuf-able named parameter, while it
        skips ``**kwargs``.
        """
        progress_callback: Optional[Callable[[Dict[str, Any]], None]] = kwargs.pop(
            "progress_callback", None
        )
        if kwargs:
            raise TypeError(f"TextClassifier.train() got unexpected arguments {sorted(kwargs)}")
        epochs = int(_or_default(epochs, DEFAULT_EPOCHS))
        learning_rate = float(_or_default(learning_rate, DEFAULT_LEARNING_RATE))
        l2 = float(_or_default(l2, DEFAULT_L2))
        n_features = int(_or_default(n_features, DEFAULT_N_FEATURES))
        ngrams = int(_or_default(ngrams, DEFAULT_NGRAMS))
        sleep_per_epoch = float(_or_default(sleep_per_epoch, 0.0))
        weight_noise = float(_or_default(weight_noise, 0.0))
        seed = int(_or_default(seed, 0))
        error.value_check("<CKD21873403E>", epochs >= 1, "epochs must be >= 1, got {}", epochs)
        error.value_check(
            "<CKD21873404E>", learning_rate > 0, "learning_rate must be > 0, got {}", learning_rate
        )
        error.value_check(
            "<CKD21873405E>", n_features >= 2, "n_features must be >= 2, got {}", n_features
        )
        error.value_check("<CKD21873406E>", ngrams >= 1, "ngrams must be >= 1, got {}", ngrams)
        error.value_check("<CKD21873407E>", sleep_per_epoch >= 0, "sleep_per_epoch must be >= 0")
        error.value_check("<CKD21873414E>", weight_noise >= 0, "weight_noise must be >= 0")

        examples = [
            _as_example(item)
            for item in (load_examples() if training_data is None else training_data)
        ]
        error.value_check("<CKD21873408E>", len(examples) > 0, "training_data is empty")
        labels = sorted({label for _, label in examples})
        error.value_check(
            "<CKD21873409E>", len(labels) >= 2, "need at least two labels, got {}", labels
        )
        label_index = {label: i for i, label in enumerate(labels)}
        y = np.array([label_index[label] for _, label in examples], dtype=np.int64)

        # Sparse rows -> a dense matrix over only the buckets that occur.
        rows = [counts_to_vector(hashed_counts(text, n_features, ngrams)) for text, _ in examples]
        all_idx = np.concatenate([idx for idx, _ in rows])
        used, inverse = np.unique(all_idx, return_inverse=True)
        x = np.zeros((len(rows), len(used)), dtype=np.float64)
        row_of = np.repeat(np.arange(len(rows)), [len(idx) for idx, _ in rows])
        x[row_of, inverse] = np.concatenate([val for _, val in rows])

        n, k = len(examples), len(labels)
        w = np.zeros((len(used), k))
        b = np.zeros(k)
        # Adam rather than plain gradient descent: template words shared by both
        # classes make plain GD oscillate unless the step is tuned per dataset.
        adam = _Adam([w, b], learning_rate)
        onehot = np.eye(k)[y]
        log_every = max(1, epochs // 10)
        log.info(
            "<CKD21873410I>",
            "training on %d examples, %d labels, %d/%d feature buckets used, %d epochs",
            n,
            k,
            len(used),
            n_features,
            epochs,
        )
        started = time.monotonic()
        loss = accuracy = float("nan")
        for epoch in range(1, epochs + 1):
            probs = _softmax(x @ w + b)
            loss = float(-np.mean(np.log(probs[np.arange(n), y] + 1e-12)))
            accuracy = float(np.mean(probs.argmax(axis=1) == y))
            grad = (probs - onehot) / n
            adam.step([x.T @ grad + l2 * w, grad.sum(axis=0)])
            progress = {
                "epoch": epoch,
                "epochs": epochs,
                "loss": loss,
                "accuracy": accuracy,
                "elapsed": time.monotonic() - started,
            }
            if epoch % log_every == 0 or epoch == epochs:
                log.info(
                    "<CKD21873411I>",
                    "epoch %d/%d loss=%.4f accuracy=%.3f",
                    epoch,
                    epochs,
                    loss,
                    accuracy,
                )
            if progress_callback is not None:
                progress_callback(progress)
            if sleep_per_epoch:
                interruptible_sleep(sleep_per_epoch)

        if weight_noise > 0:
            rng = np.random.default_rng(seed)
            weights = rng.standard_normal((n_features, k), dtype=np.float32)
            weights *= np.float32(weight_noise)
        else:
            # np.full, not np.zeros: it writes every page, so the model's size is
            # really resident memory (calloc'd zeros would stay virtual).
            weights = np.full((n_features, k), 0.0, dtype=np.float32)
        weights[used] = w.astype(np.float32)
        metrics = {
            "epochs": epochs,
            "loss": loss,
            "accuracy": accuracy,
            "n_examples": n,
            "train_seconds": time.monotonic() - started,
        }
        log.info("<CKD21873412I>", "training done: %s", metrics)
        return cls(weights, b.astype(np.float32), labels, ngrams, metrics)

    # -- persistence -----------------------------------------------------------

    def save(self, model_path: str, **kwargs) -> None:
        """Write config.yml (labels, hyper-parameters) and uncompressed weights.npz."""
        saver = ModuleSaver(self, model_path=model_path)
        with saver:
            np.savez(
                os.path.join(saver.model_path, self.WEIGHTS_FILE),
                weights=self._weights,
                bias=self._bias,
            )
            saver.update_config(
                {
                    "labels": self._labels,
                    "ngrams": self._ngrams,
                    "n_features": self.n_features,
                    "weights_file": self.WEIGHTS_FILE,
                    "training_metrics": self.training_metrics,
                }
            )

    @classmethod
    def load(cls, model_path: Union[str, ModuleConfig], **kwargs) -> "TextClassifier":
        """Load from a directory or a ModuleConfig (what caikit's initializers pass)."""
        loader = ModuleLoader(model_path)
        config = loader.config
        weights_path = os.path.join(loader.model_path, config.weights_file or cls.WEIGHTS_FILE)
        # np.load reads npz members fully into memory, so the caller may delete the
        # directory afterwards (caikit does, when loading from bytes).
        with np.load(weights_path) as arrays:
            weights = arrays["weights"]
            bias = arrays["bias"]
        return cls(
            weights,
            bias,
            list(config.labels),
            int(config.ngrams or DEFAULT_NGRAMS),
            dict(config.training_metrics or {}),
        )

    # -- inference -------------------------------------------------------------

    def _probabilities(self, counts: Dict[int, float]) -> np.ndarray:
        idx, val = counts_to_vector(counts)
        logits = val.astype(np.float64) @ self._weights[idx] + self._bias
        return _softmax(logits)

    def _best(self, probs: np.ndarray) -> Tuple[str, float]:
        best = int(probs.argmax())
        return self._labels[best], float(probs[best])

    def predict_proba(self, text: str) -> Dict[str, float]:
        """Plain-Python view of the label distribution, handy outside caikit."""
        probs = self._probabilities(hashed_counts(text, self.n_features, self._ngrams))
        return {label: float(p) for label, p in zip(self._labels, probs, strict=True)}

    @ExampleTextClassificationTask.taskmethod()
    def run(self, text: str) -> ClassificationResult:
        """Classify one text."""
        probs = self._probabilities(hashed_counts(text, self.n_features, self._ngrams))
        label, score = self._best(probs)
        order = np.argsort(-probs, kind="stable")
        return ClassificationResult(
            label=label,
            score=score,
            scores=[LabelScore(label=self._labels[i], score=float(probs[i])) for i in order],
        )

    @ExampleTextClassificationTask.taskmethod(output_streaming=True)
    def run_stream(
        self, text: str, unit: str = "sentence", delay_per_item: float = 0.0
    ) -> Iterable[ClassificationStreamResult]:
        """Classify a text chunk by chunk ("sentence" or "word"), yielding lazily.

        ``delay_per_item`` pauses between results so tests and demos can watch
        (or cancel) a long stream.
        """
        unit = unit or "sentence"
        # Validate now rather than on first next(), so a bad request fails at the call.
        error.value_check(
            "<CKD21873413E>", unit in CHUNK_UNITS, "unit must be one of {}", CHUNK_UNITS
        )
        return self._stream(iter_chunks(text, unit), float(delay_per_item or 0.0))

    @ExampleTextClassificationTask.taskmethod(input_streaming=True, output_streaming=True)
    def run_bidi_stream(
        self, text_stream: DataStream[str], delay_per_item: float = 0.0
    ) -> Iterable[ClassificationStreamResult]:
        """Classify each incoming text as it arrives; offsets refer to the concatenated input."""

        def chunks() -> Iterator[Tuple[int, int, str]]:
            offset = 0
            for item in text_stream:
                yield offset, offset + len(item), item
                offset += len(item)

        return self._stream(chunks(), float(delay_per_item or 0.0))

    def _stream(
        self, chunks: Iterator[Tuple[int, int, str]], delay_per_item: float
    ) -> Iterator[ClassificationStreamResult]:
        cumulative: Dict[int, float] = {}
        for index, (start, end, chunk) in enumerate(chunks):
            if index and delay_per_item:
                interruptible_sleep(delay_per_item)
            counts = hashed_counts(chunk, self.n_features, self._ngrams)
            for bucket, count in counts.items():
                cumulative[bucket] = cumulative.get(bucket, 0.0) + count
            label, score = self._best(self._probabilities(counts))
            cum_label, cum_score = self._best(self._probabilities(cumulative))
            yield ClassificationStreamResult(
                index=index,
                text=chunk,
                start=start,
                end=end,
                label=label,
                score=score,
                cumulative_label=cum_label,
                cumulative_score=cum_score,
            )
