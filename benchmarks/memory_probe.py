"""Client RSS growth from loading one model, measured in a fresh process.

A fresh interpreter per measurement keeps the allocator's high-water marks of
earlier benchmarks (and the caller's own imports) out of the number: the
baseline is taken after every import and, for DASK, after the client has
connected, so the growth is what loading the model itself costs the caller.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import psutil


def _rss() -> int:
    gc.collect()
    return psutil.Process().memory_info().rss


def probe(mode: str, model_path: str, address: str | None) -> dict:
    import caikit
    from caikit.core.modules import ModuleConfig

    import caikit_dask
    import caikit_dask.example  # noqa: F401 - registers the module being loaded

    initializer = None
    if mode == "dask":
        initializer = caikit_dask.DaskModelInitializer(
            {"connection": {"address": address}, "replicas": 1}, "default"
        )
        initializer.backend.client  # noqa: B018 - connect before the baseline
    before = _rss()
    started = time.perf_counter()
    if mode == "dask":
        model = initializer.init(ModuleConfig.load(model_path))
    else:
        model = caikit.load(model_path)
    loaded = time.perf_counter() - started
    result = model.run("a wonderful, delightful film")
    after = _rss()
    if mode == "dask":
        model.close()
        caikit_dask.connection.DaskConnection.close_all()
    return {
        "mode": mode,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "growth_mb": (after - before) / 2**20,
        "load_s": loaded,
        "label": result.label,
        "model_type": type(model).__name__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mode", choices=("local", "dask"), required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--address")
    args = parser.parse_args(argv)
    print(json.dumps(probe(args.mode, args.model, args.address)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
