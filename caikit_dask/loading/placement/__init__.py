"""Where replicas go, as the caller sees it: booking workers, memory, more workers.

- ``booking``: one scheduler call per booking or release (``scheduler.booking``), and
  why nothing fits.
- ``memory``: the memory policy, a model's memory request, its size on disk.
- ``scale_up``: a model that fits nowhere asks an adaptive cluster for a worker.
- ``starting``: starting one actor on a booked worker and waiting for its load.
- ``source``: the model's path, or its zipped files, for each worker.
"""
