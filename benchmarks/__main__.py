"""Entry point: ``python -m benchmarks``."""

import os

# One BLAS thread per process: on a small machine extra BLAS threads would only
# fight the worker processes for cores and make the CPU-bound model dishonest.
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from .run import main  # noqa: E402 - the environment must be set before numpy loads

raise SystemExit(main())
