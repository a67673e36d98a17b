"""The names the scheduler keeps our state under, and the event topics it announces on.

Plain strings, shared by the caller side and the code sent to the scheduler.
"""

# Task metadata: {worker: {actor key: resources}}. Dask holds an actor's resources only
# while its constructor runs (distributed#2843), so placements are booked here.
PLACEMENTS = "caikit-dask-placements"
# Task metadata: {worker: {actor key: booking}}, a booking being
# {"model" (its path), "bytes", "estimate", "used", "evictable", "loaded", "fraction",
#  "name" (the last part of its path), "module_id", "loaded_at" (once loaded)}.
MEMORY = "caikit-dask-memory"
# Task metadata: {worker: [[time released, bytes], ...]}: loaded models released lately,
# which the worker's last measured process memory may still hold.
RELEASED = "caikit-dask-released"
# Task metadata: {worker: time}: when memory pressure last evicted there (see ``relieve``).
RELIEVED = "caikit-dask-relieved"
# Task metadata: {model path: bytes its last load took on a worker}.
MEASURED = "caikit-dask-measured"
# Task metadata: {ask id: {"base": workers when asked, "until": time, "count": workers
# wanted more (1 if absent)}} (adaptive asks).
ASKS = "caikit-dask-worker-asks"
# Task metadata: when adaptive_target was last called.
ASKED = "caikit-dask-target-asked"

# Task metadata: {"total": evictions so far, "recent": [{"time", "worker", "key", "model",
# "for"}, ...]}: the last RECENT_EVICTIONS, for the operator's view (the bookings are gone).
EVICTED = "caikit-dask-evicted"
RECENT_EVICTIONS = 50

# Event topic: {"evicted": [[worker, actor key], ...]} unloaded to make room.
EVICTIONS = "caikit-dask-evictions"
# Event topic: {"workers": {worker: [actor key, ...]}} about to retire.
RETIRING = "caikit-dask-retiring"
# Event topic: {"worker", "key"}: an actor that cannot move off its retiring worker.
STAYS = "caikit-dask-retiring-stays"
# Event topic: {"model", "module_id", "from", "to"}: a replica moved off a retiring worker.
MOVED = "caikit-dask-moved"
