"""Text featurisation: hashed word n-grams, plus lazy text chunking for streaming.

Hashing uses blake2b, not ``hash()``: Python's string hash is salted per
process, and a model trained on one Dask worker must featurise identically on
another.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import numpy as np

_TOKEN_RE = re.compile(r"[a-z0-9']+")
_SENTENCE_RE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
_WORD_RE = re.compile(r"\S+")

CHUNK_UNITS = ("sentence", "word")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens; apostrophes are kept so "didn't" stays one token."""
    return _TOKEN_RE.findall(text.lower())


def _bucket(key: str, n_features: int) -> int:
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % n_features


def hashed_counts(text: str, n_features: int, ngrams: int = 2) -> dict[int, float]:
    """Map a text to {bucket: count} over its 1..ngrams word n-grams."""
    tokens = tokenize(text)
    counts: dict[int, float] = {}
    for n in range(1, ngrams + 1):
        for i in range(len(tokens) - n + 1):
            key = f"{n}:" + " ".join(tokens[i : i + n])
            idx = _bucket(key, n_features)
            counts[idx] = counts.get(idx, 0.0) + 1.0
    return counts


def counts_to_vector(counts: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """Sparse (indices, values) with sublinear tf and unit L2 norm, so long texts don't dominate."""
    if not counts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    idx = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    val = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
    val /= np.linalg.norm(val)
    return idx, val.astype(np.float32)


def iter_chunks(text: str, unit: str = "sentence") -> Iterator[tuple[int, int, str]]:
    """Yield (start, end, chunk) lazily, so a huge text streams without being split up front."""
    if unit not in CHUNK_UNITS:
        raise ValueError(f"unit must be one of {CHUNK_UNITS}, got {unit!r}")
    pattern = _SENTENCE_RE if unit == "sentence" else _WORD_RE
    for match in pattern.finditer(text):
        chunk = match.group(0)
        stripped = chunk.strip()
        if not stripped:
            continue
        start = match.start() + (len(chunk) - len(chunk.lstrip()))
        yield start, start + len(stripped), stripped
