"""Everything that runs on the scheduler for served models, sent by value.

- ``books``: the names of the books (task metadata) and event topics, shared with
  the caller side.
- ``plan``: which worker takes a model and what to evict for it: a pure function of
  plain data.
- ``booking``: the steps run on the scheduler's event loop (reserve = gather, plan,
  apply; loaded, release, touch, keep), each atomic.
- ``retiring``: the plugin that holds a worker's retirement while its models move.
- ``adaptive_target``: the plugin that makes adaptive scaling count our models.

Every module here is registered once, in this file, to travel by value: they import
only distributed, the standard library and ``dask_internals`` (also sent by value),
so the scheduler needs no caikit-dask. Each module is registered by name, as
distributed's ``dumps`` looks up the exact module (not its package) in cloudpickle's
registry.
"""

import sys

import cloudpickle

from . import adaptive_target, booking, books, plan, retiring

for _module in (sys.modules[__name__], adaptive_target, booking, books, plan, retiring):
    cloudpickle.register_pickle_by_value(_module)
