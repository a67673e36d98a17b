"""How many ranks a training runs as: config < per-module config < ``dask.annotate``.

Like the resources of a training (``resources.submit_options``), the per-call way
is an annotation: ``with dask.annotate(world_size=4): trainer.train(...)``.
"""

from __future__ import annotations

import dask

from ...errors import error


def world_size_for(
    world_size: int, module_world_size: dict[str, int], module_id: str | None
) -> int:
    """The training's world size, layered config < module < ``dask.annotate(world_size=)``."""
    size = module_world_size.get(module_id, world_size) if module_id else world_size
    annotations = dask.get_annotations()
    if "world_size" in annotations:
        size = annotations["world_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            error(
                "<DSK30000040E>",
                ValueError(
                    f"dask.annotate(world_size={size!r}) is not a number of ranks: "
                    "use a whole number of 1 or more"
                ),
            )
    return size
