"""The results of a run for people (a text table per benchmark) and for tools (JSON).

Ratios are proxy / baseline unless a column says otherwise. Each section has
its own renderer; a section that was not run prints nothing, one that failed
prints its error once, in the header.
"""

from __future__ import annotations

import json
from pathlib import Path

from dask.utils import format_bytes, format_time

from .environment import REPO
from .formatting import factor, number, ratio, table
from .results import SECTIONS, lookup

RESULTS_DIR = REPO / "benchmarks" / "results"

LATENCY_VARIANTS = (
    ("proxy", "proxy.run (DaskModelInitializer, 1 replica, direct calls)"),
    ("proxy_direct_calls_off", "proxy.run, direct_calls: off (Dask actor RPC)"),
    ("floor", "floor: 2 processes, blocking loopback socket, pickle"),
    ("local", "local in-process call"),
    ("raw_dask_direct", "raw Dask actor, direct_to_workers=True"),
    ("raw_dask_scheduler", "raw Dask actor, direct_to_workers=False"),
    ("raw_dask_direct_async", "raw Dask actor, async method (info)"),
)
TARGET_RESULT = {True: "met", False: "NOT MET", None: "n/a"}


def render(results: dict) -> str:
    """The human-readable report: header, one table per benchmark run, the targets."""
    renderers = (
        _header,
        _failures,
        _latency,
        _throughput,
        _scaling,
        _training,
        _memory,
        _many_trainings,
        _batch,
        _many_models,
        _memory_pressure,
        _step_load,
        _gang,
        _runtime,
        _targets,
    )
    return "\n".join(line for renderer in renderers for line in renderer(results))


def write_json(results: dict, path: str | None) -> Path:
    """Write the results to ``path``, or to ``benchmarks/results/<date>-<commit>-<plan>.json``."""
    target = Path(path) if path else _default_json_path(results["meta"])
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(results, indent=2, default=str))
    return target


def _default_json_path(meta: dict) -> Path:
    stamp = meta["date"].replace(":", "").replace("-", "")
    return RESULTS_DIR / f"{stamp}-{meta['commit'] or 'nogit'}-{meta['plan']}.json"


# -- header ------------------------------------------------------------------------------------


def _header(results: dict) -> list[str]:
    meta = results["meta"]
    return [
        f"caikit-dask benchmarks ({meta['plan']}) commit {meta['commit'] or '?'}"
        f"{' (dirty)' if meta['dirty'] else ''}  {meta['date']}",
        f"python {meta['python']}  caikit {meta['caikit']}  dask {meta['dask']}  "
        f"distributed {meta['distributed']}  cpus {meta['cpus']}  {meta['platform']}",
        "LocalCluster: 2 worker processes x 1 thread, 127.0.0.1, scheduler in this process",
        f"load average (1/5/15 min) at start {meta['loadavg_start']}, "
        f"at end {meta.get('loadavg_end')}",
        *_foreign_load(meta.get("foreign_cores") or {}),
        _ray_status(results.get("ray") or {}),
    ]


def _foreign_load(foreign: dict) -> list[str]:
    """How busy other processes kept the machine, and a warning when it was too busy."""
    if not foreign:
        return []
    measured = {name: value for name, value in foreign.items() if value is not None}
    per_section = ", ".join(f"{name} {value:.2f}" for name, value in measured.items())
    lines = [
        f"CPU used by other processes (cores, mean): {per_section} "
        "(Ray's daemons detach from this process tree, so the ray figure includes them)"
    ]
    judged = [v for k, v in measured.items() if k not in ("ray", "whole run")]
    if max(judged, default=0) > 0.3:
        lines.append("WARNING: other work shared the machine; absolute numbers are noisy")
    return lines


def _ray_status(ray: dict) -> str:
    if not ray:
        return "Ray baseline not run (no call benchmark in this run)"
    if "skipped" in ray or "error" in ray:
        return f"Ray baseline skipped: {ray.get('skipped') or ray.get('error')}"
    return f"Ray {ray.get('ray_version')} (own process, measured before the cluster)"


def _failures(results: dict) -> list[str]:
    lines = []
    for section in SECTIONS:
        if "error" in (results.get(section) or {}):
            lines += ["", f"== {section} == FAILED: {results[section]['error']}"]
    return lines


# -- one renderer per benchmark ----------------------------------------------------------------


def _latency(results: dict) -> list[str]:
    variants = lookup(results, "latency", "variants")
    if not variants:
        return []
    proxy = variants["proxy"]["p50_us"]
    rows = [_latency_row(label, variants.get(key), proxy) for key, label in LATENCY_VARIANTS]
    rows.append(_latency_row("Ray actor", lookup(results, "ray", "latency"), proxy))
    rows.append(
        _latency_row(
            "Ray Serve DeploymentHandle, 1 replica",
            lookup(results, "ray", "serve", "latency"),
            proxy,
        )
    )
    return table(
        f"1. sequential latency, trivial call (n={variants['proxy']['n']} each, interleaved)",
        ["variant", "p50 us", "p99 us", "proxy/this p50"],
        rows,
    )


def _latency_row(label: str, measured: dict | None, proxy_p50: float) -> list[str]:
    if not measured:
        return [label, "skipped", "", ""]
    p50 = measured["p50_us"]
    return [label, number(p50), number(measured["p99_us"]), ratio(proxy_p50, p50)]


def _throughput(results: dict) -> list[str]:
    variants = lookup(results, "throughput", "variants")
    if not variants:
        return []
    threads = results["throughput"]["threads"]
    ray = lookup(results, "ray", "throughput") or {}
    serve = lookup(results, "ray", "serve", "throughput") or {}
    off = "direct_calls: off"
    measured = (
        (variants, "proxy_threads", f"proxy.run, {threads} threads, 1 replica"),
        (variants, "proxy_threads_2_replicas", f"proxy.run, {threads} threads, 2 replicas"),
        (variants, "proxy_off_threads", f"proxy.run, {off}, {threads} threads, 1 replica"),
        (variants, "proxy_off_threads_2_replicas", f"proxy.run, {off}, {threads} th., 2 replicas"),
        (variants, "raw_dask_pipelined", "raw Dask actor, pipelined (1 thread, 200 outstanding)"),
        (variants, "raw_dask_threads", f"raw Dask actor, {threads} threads (info)"),
        (ray, "ray_actor_threads", f"Ray actor, {threads} threads"),
        (ray, "ray_actor_pipelined", "Ray actor, pipelined (1 thread, 200 outstanding)"),
        (serve, "ray_serve_threads", f"Ray Serve DeploymentHandle, {threads} threads"),
    )
    proxy = variants["proxy_threads"]["calls_per_s"]
    rows = [
        _rate_row(label, lookup(source, key, "calls_per_s"), proxy)
        for source, key, label in measured
    ]
    return table(
        "2. concurrent throughput, trivial call (median of rounds)",
        ["variant", "calls/s", "proxy/this"],
        rows,
    )


def _rate_row(label: str, rate: float | None, proxy_rate: float) -> list[str]:
    if rate is None:
        return [label, "skipped", ""]
    return [label, number(rate), ratio(proxy_rate, rate)]


def _scaling(results: dict) -> list[str]:
    scaling = results.get("scaling")
    if not scaling or "ratio" not in scaling:
        return []
    work_ms = scaling["worker_call_ms"]
    rows = [
        ["the work itself, in this process", number(scaling["local_call_ms"], ".1f"), "", "", ""],
        ["the work itself, on a worker", number(work_ms, ".1f"), "", "", ""],
    ]
    for n in (1, 2):
        replicas = scaling[f"replicas_{n}"]
        rows.append(
            [
                f"{n} replica(s) on {len(replicas['workers'])} worker(s), "
                f"{scaling['threads']} threads",
                number(replicas["sequential_call_ms"], ".1f"),
                number(replicas["calls_per_s"], ".1f"),
                factor(scaling["ratio"] if n == 2 else 1.0),
                number(1e3 / work_ms * n),
            ]
        )
    return table(
        "3. scaling, CPU-bound model (~10 ms/call, GIL-bound)",
        ["variant", "1 call ms", "calls/s", "vs 1 (median of rounds)", "ideal (n x 1/work)"],
        rows,
    )


def _training(results: dict) -> list[str]:
    training = results.get("training")
    if not training or "train_returns" not in training:
        return []
    steps = (
        ("trainer.train() returns", training["train_returns"]),
        ("task end (worker clock) -> wait() returns", training["wait_after_end"]),
    )
    rows = [
        [step, *(number(s[key], ".1f") for key in ("p50_ms", "p90_ms", "max_ms")), str(s["n"])]
        for step, s in steps
    ]
    return table(
        f"4. training (trivial module, {format_time(training['train_sleep_s'])} train)",
        ["step", "p50 ms", "p90 ms", "max ms", "n"],
        rows,
    )


def _memory(results: dict) -> list[str]:
    memory = results.get("memory")
    if not memory or "dask" not in memory:
        return []
    local, dask = memory["local"], memory["dask"]
    growth_ratio = dask["growth_mb"] / local["growth_mb"] if local["growth_mb"] else None
    rows = [
        [
            "LOCAL (caikit.load)",
            number(local["growth_mb"], ".1f"),
            number(local["load_s"], ".2f"),
            "",
        ],
        [
            "DASK (DaskModelInitializer.init)",
            number(dask["growth_mb"], ".1f"),
            number(dask["load_s"], ".2f"),
            factor(growth_ratio, ".3f"),
        ],
    ]
    model = format_bytes(memory["model_mb"] * 2**20)
    return table(
        f"5. client RSS growth loading a {model} model (fresh process each)",
        ["loader", "RSS growth MB", "load s", "dask/local"],
        rows,
    )


def _many_trainings(results: dict) -> list[str]:
    scale = results.get("scale")
    if not scale or "trainings" not in scale:
        return []
    n = scale["trainings"]
    rows = [
        [
            f"submit {n} trainings",
            number(scale["submit_all_s"], ".2f"),
            number(scale["submit_per_train_ms"], ".2f"),
        ],
        [
            f"get_info() on {n} (just submitted)",
            number(scale["get_info_all_s"], ".3f"),
            number(scale["get_info_per_call_ms"], ".3f"),
        ],
        [f"all {n} done, after submit", number(scale["all_done_after_submit_s"], ".2f"), ""],
        [
            f"get_info() on {n} (all done)",
            number(scale["get_info_all_done_s"], ".3f"),
            number(scale["get_info_all_done_s"] / n * 1e3, ".3f"),
        ],
    ]
    reattach = scale.get("reattach") or {}
    if reattach:
        rows.append(_reattach_row(reattach))
    listing = scale.get("list") or {}
    if listing:
        rows += [
            [
                f"list_trainings(), new client: {listing['listed']} listed",
                number(listing["list_s"], ".3f"),
                "",
            ],
            [
                f"get_model_future+get_info on {n} after listing",
                number(listing["get_model_future_all_s"], ".3f"),
                number(listing["get_model_future_per_call_ms"], ".3f"),
            ],
        ]
    lines = table("6. many trainings", ["step", "total s", "per call ms"], rows)
    lines.append(
        f"statuses at first read: {scale['statuses_at_read']}; final: {scale['final_statuses']}"
    )
    if reattach:
        lines.append(f"statuses read from the new client: {reattach['statuses']}")
    if listing:
        lines.append(f"statuses after listing: {listing['statuses']}")
    return lines


def _reattach_row(reattach: dict) -> list[str]:
    read, of = reattach["read"], reattach["of"]
    partial = "" if read == of else f" (stopped at {format_time(reattach['budget_s'])} budget)"
    return [
        f"get_model_future+get_info, new client: {read}/{of}{partial}",
        number(reattach["total_s"], ".2f"),
        number(reattach["per_call_ms"], ".2f"),
    ]


BATCH_VARIANTS = (
    ("proxy_map", "proxy.map, 1 caller thread"),
    ("proxy_run_threads", "proxy.run loop, {threads} threads"),
    ("bag_load_per_task", "Bag.map_partitions, caikit.load in each of {partitions} tasks"),
)


def _batch(results: dict) -> list[str]:
    batch = results.get("batch")
    if not batch or "variants" not in batch:
        return []
    variants = batch["variants"]
    proxy_map = variants["proxy_map"]["calls_per_s"]
    rows = [
        [
            label.format(threads=batch["threads"], partitions=batch["bag_partitions"]),
            number(variants[key]["calls_per_s"]),
            ratio(proxy_map, variants[key]["calls_per_s"]),
        ]
        for key, label in BATCH_VARIANTS
    ]
    return table(
        f"7. batch scoring, {batch['inputs']:,} trivial inputs, {batch['replicas']} replicas, "
        "results in order (median of rounds)",
        ["variant", "calls/s", "map/this"],
        rows,
    )


def _many_models(results: dict) -> list[str]:
    many = results.get("many_models")
    if not many or "models" not in many:
        return []
    n = many["models"]
    rows = [
        [
            "load, ms per model",
            number(many["one_model_load_ms"], ".1f"),
            number(many["load_per_model_ms"], ".1f"),
            ratio(many["load_per_model_ms"], many["one_model_load_ms"]),
        ],
        [f"load all, s ({many['loaders']} at a time)", "", number(many["load_all_s"], ".2f"), ""],
        [
            f"calls/s, {many['caller_threads']} threads (round-robin over the models)",
            number(many["one_model_calls_per_s"]),
            number(many["round_robin_calls_per_s"]),
            ratio(many["round_robin_calls_per_s"], many["one_model_calls_per_s"]),
        ],
    ]
    for figure, label in (
        ("threads", "threads per worker (max)"),
        ("pool_threads", "model pool threads per worker (max)"),
        ("rss_mb", "RSS per worker, MB (max)"),
    ):
        one, many_value = many[f"max_{figure}_one"], many[f"max_{figure}_many"]
        rows.append([label, number(one), number(many_value), ratio(many_value, one)])
    lines = table(
        f"8. many models ({n} tiny models on 2 workers)",
        ["figure", "1 model", f"{n} models", f"{n}/1"],
        rows,
    )
    lines.append(f"models that answered: {many['answered']} of {n}")
    return lines


def _memory_pressure(results: dict) -> list[str]:
    pressure = results.get("memory_pressure")
    if not pressure or "models" not in pressure:
        return []
    one_rate, one_p50 = pressure["one_model_calls_per_s"], pressure["one_model_call_p50_ms"]
    rows = [
        ["calls/s, one resident model", number(one_rate), "1.00x"],
        [
            f"calls/s, skewed ({pressure['hot_models']} models take 80% of calls)",
            number(pressure["skewed_calls_per_s"]),
            ratio(pressure["skewed_calls_per_s"], one_rate),
        ],
        [
            "calls/s, uniform over all models",
            number(pressure["uniform_calls_per_s"]),
            ratio(pressure["uniform_calls_per_s"], one_rate),
        ],
        ["call p50 ms, one resident model", number(one_p50, ".2f"), "1.00x"],
        [
            f"call p50 ms, evicted model (reloads; n={pressure['reloads']})",
            number(pressure["reload_p50_ms"], ".1f"),
            ratio(pressure["reload_p50_ms"], one_p50),
        ],
        [
            "call p99 ms, evicted model (reloads)",
            number(pressure["reload_p99_ms"], ".1f"),
            ratio(pressure["reload_p99_ms"], one_p50),
        ],
    ]
    lines = table(
        f"9. memory pressure ({pressure['models']} models of {pressure['model_mb']:g} MiB, "
        f"{pressure['pressure']:.1f}x the model memory of 2 workers x "
        f"{pressure['memory_limit']} x {pressure['memory_fraction']:g}; eviction: lru; "
        f"{pressure['caller_threads']} threads)",
        ["figure", "value", "vs one model"],
        rows,
    )
    lines.append(
        f"resident at the end: {pressure['resident_models']} models, at most "
        f"{pressure['max_booked_mb_per_worker']:.0f} MB booked on a worker of "
        f"{pressure['model_memory_mb_per_worker']:.0f} MB; failed calls: {pressure['failed_calls']}"
    )
    return lines


def _step_load(results: dict) -> list[str]:
    step = results.get("step_load")
    if not step or "phases" not in step:
        return []
    scaling = step["autoscaling"]
    rows = [
        [
            f"{index + 1}",
            str(phase["threads"]),
            number(phase["seconds"], ".1f"),
            number(phase["calls_per_s"]),
            number(phase["p99_ms"], ".1f"),
            f"{phase['replicas_start']} -> {phase['replicas_end']}",
            str(phase["failed"]),
        ]
        for index, phase in enumerate(step["phases"])
    ]
    adapt = step["adapt"]
    lines = table(
        f"10. step load, BenchSpin ~10 ms/call, autoscaling target "
        f"{scaling['target_ongoing_requests']} per replica, max {scaling['max_replicas']}, "
        f"up after {scaling['upscale_delay']}, down after {scaling['downscale_delay']}; "
        f"adaptive LocalCluster {adapt['minimum']}..{adapt['maximum']} workers, one replica each",
        ["phase", "threads", "s", "calls/s", "p99 ms", "replicas", "failed"],
        rows,
    )
    changes = (f"{replicas}/{workers} at {t:.1f}s" for t, replicas, workers in step["timeline"])
    lines.append("replicas/workers over time: " + ", ".join(changes))
    return lines


def _runtime(results: dict) -> list[str]:
    runtime = results.get("runtime")
    if not runtime:
        return []
    title = "12. caikit.runtime serving a trivial model, LOCAL vs DASK initializer"
    if "skipped" in runtime or "error" in runtime:
        return ["", f"== {title} == skipped: {runtime.get('skipped') or runtime.get('error')}"]
    latency, rates, threads = runtime["latency"], runtime["throughput"], runtime["threads"]
    rows = []
    for protocol in ("grpc", "http"):
        local, dask = f"local_{protocol}", f"dask_{protocol}"
        for name in (local, dask):
            rows.append(
                [
                    f"{name.split('_')[0].upper()} over {protocol}",
                    number(latency[name]["p50_us"]),
                    number(latency[name]["p99_us"]),
                    ratio(latency[name]["p50_us"], latency[local]["p50_us"]),
                    number(rates[f"{name}_threads"]["calls_per_s"]),
                    ratio(
                        rates[f"{name}_threads"]["calls_per_s"],
                        rates[f"{local}_threads"]["calls_per_s"],
                    ),
                ]
            )
    return table(
        title,
        ["variant", "p50 us", "p99 us", "p50 vs LOCAL", f"calls/s, {threads} clients", "vs LOCAL"],
        rows,
    )


def _gang(results: dict) -> list[str]:
    gang = results.get("gang")
    if not gang:
        return []
    title = "11. one DDP training as 1, 2, 3 ranks (gloo, CPU; 3 worker processes x 1 thread)"
    if "skipped" in gang:
        return ["", f"== {title} == skipped: {gang['skipped']}"]
    one = gang["ranks"]["1"]
    rows = [
        [
            ranks,
            number(measured["step_s"] * 1e3, ".1f"),
            ratio(measured["step_s"], one["step_s"]),
            number(measured["start_s"] * 1e3),
            ratio(measured["start_s"], one["start_s"]),
        ]
        for ranks, measured in gang["ranks"].items()
    ]
    return table(
        f"{title}, {gang['steps']} steps, median of {gang['repeats']}",
        ["ranks", "step ms", "vs 1 rank", "train() -> all running ms", "vs 1 rank"],
        rows,
    )


def _targets(results: dict) -> list[str]:
    rows = [
        [target["target"], TARGET_RESULT[target["met"]], target["detail"]]
        for target in results.get("targets", [])
    ]
    return table("targets", ["target", "result", "measured"], rows)
