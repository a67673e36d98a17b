"""caikit-dask's dask config defaults, shipped as ``caikit_dask.yaml``.

Loaded on import (in the caller and in the workers, which import caikit_dask to run
its actors), the way Dask's own packages ship theirs, so ``dask.config.get`` finds
every caikit_dask key with its default and user config overrides it.
"""

from __future__ import annotations

import os

import dask.config
import yaml

with open(os.path.join(os.path.dirname(__file__), "caikit_dask.yaml")) as _file:
    DEFAULTS = yaml.safe_load(_file)

dask.config.update_defaults(DEFAULTS)
