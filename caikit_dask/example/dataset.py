"""The bundled sentiment dataset (210 short texts written for this project)."""

from __future__ import annotations

import csv
import io
from importlib import resources

from .data_model import TextTrainingExample

DATASET_FILE = "sentiment.csv"


def load_examples() -> list[TextTrainingExample]:
    """Read the CSV shipped as package data; no network, works from a wheel or a zip."""
    raw = resources.files("caikit_dask.example.data").joinpath(DATASET_FILE).read_text("utf-8")
    return [
        TextTrainingExample(text=row["text"], label=row["label"])
        for row in csv.DictReader(io.StringIO(raw))
    ]
