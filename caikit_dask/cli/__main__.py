"""``python -m caikit_dask.cli``: the same as the ``caikit-dask`` console script."""

from . import main

raise SystemExit(main())
