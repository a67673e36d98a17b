"""Make the repository importable when caikit-dask is not pip-installed (plain `pytest`)."""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("caikit_dask") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
