"""One training on many workers: ``world_size`` ranks, started together, one status.

Dask has no gang scheduling (dask/distributed#8624). What xgboost.dask and
lightgbm.dask do instead (a ``MultiLock`` over the chosen workers, taken by the
client, then one task per worker pinned with ``workers=[addr]``,
``allow_other_workers=False``) keeps two such jobs apart, but not a job from
other tasks that want the same resources: a pinned task waits behind whatever
holds its worker's GPU while its peers, already started, hold theirs waiting for
it. The lock also lives as long as the client that took it. So a training of N
ranks here is:

- a **driver** task (``driver``), submitted like any training (its key, future,
  published record, events, ``retries``) but holding no resources: it secedes
  from its worker's thread pool and coordinates;
- a **book** on the scheduler (``book``, a scheduler plugin shipped by value):
  the driver queues there and is admitted only when N worker processes offer the
  training's resources *free now* (and a free thread), none held by another gang.
  The scheduler decides in one step of its event loop, so two gangs never split
  the workers between them; a gang that does not fit waits holding nothing, in
  arrival order. The book frees a worker when its rank's task leaves it, whoever
  submitted it and whether or not that client still lives, and sees every rank
  fail, every worker leave and the driver go;
- N **rank** tasks (``rank``), pinned to the admitted workers with the
  resources. Each reports to the book as soon as it runs; none trains until all
  have (a barrier in the book). A rank that does not start within
  ``caikit_dask.gang-start-timeout`` (another task took its worker in between)
  makes the driver give the workers back, un-started, and queue again: no rank
  holds resources waiting for the others for longer than that.

Each rank runs ``train`` with the torch.distributed environment set
(``environment``) in caikit's stoppable thread, watching the book: when any rank
fails, a worker leaves, or the training is canceled, the book aborts the gang and
every rank destroys its thread. What frees a peer blocked in a collective is this
rank's end of their connections closing (gloo raises "Connection closed by peer"
at once): a killed worker's close by themselves; a rank that fails or is stopped
ends its process group and shuts down the connections its training opened to its
peers (``sockets``). Aborting or shutting down one's own group from another thread
does not unblock one's own pending collective, and with a DDP module the group's
connections outlive ``destroy_process_group()`` (both measured with torch 2.8's gloo).
"""
