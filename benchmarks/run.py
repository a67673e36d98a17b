"""Run every benchmark against one embedded LocalCluster and print a table of ratios.

Usage: ``python -m benchmarks [--smoke] [--json PATH] [--no-ray] [--strict]``.

The baselines (in-process call, plain Dask actor with and without
``direct_to_workers``, Ray actor) are measured in the same run as the proxy,
on the same machine, so the ratios are what to compare between commits; the
absolute numbers mostly describe the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
SECTIONS = ("latency", "throughput", "scaling", "training", "memory", "scale")


@dataclasses.dataclass(frozen=True)
class Plan:
    """How much of each benchmark to run: ``FULL`` for numbers, ``SMOKE`` to check it works."""

    name: str
    latency_rounds: int
    latency_per_round: int
    throughput_duration: float
    throughput_repeats: int
    caller_threads: int
    scaling_duration: float
    scaling_repeats: int
    scaling_threads: int
    trainings: int
    train_sleep: float
    memory_features: int
    scale_trainings: int
    ray: bool


FULL = Plan("full", 20, 100, 2.0, 3, 16, 1.5, 6, 8, 20, 0.1, 26_000_000, 1000, True)
SMOKE = Plan("smoke", 3, 30, 0.3, 1, 16, 0.5, 1, 8, 3, 0.05, 1_000_000, 20, False)


def log(message: str) -> None:
    """Progress goes to stderr so stdout holds only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- environment -------------------------------------------------------------------------------


def _worker_environment() -> None:
    """Workers (spawned processes) must import ``benchmarks`` and use one BLAS thread."""
    paths = [str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _meta(plan: Plan) -> dict:
    import caikit
    import dask
    import distributed
    import psutil

    def version(module: Any) -> str:
        return getattr(module, "__version__", "?")

    try:
        caikit_version = importlib.metadata.version("caikit")
    except Exception:  # noqa: BLE001 - only informative
        caikit_version = version(caikit)
    return {
        "plan": plan.name,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "caikit": caikit_version,
        "dask": version(dask),
        "distributed": version(distributed),
    }


def _subprocess_json(args: list[str], timeout: float) -> dict:
    """Run ``python -m <args>`` and parse the JSON object on its last stdout line."""
    completed = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    if completed.returncode != 0 or not lines:
        tail = (completed.stderr or completed.stdout)[-2000:]
        raise RuntimeError(f"{' '.join(args)} exited {completed.returncode}: {tail}")
    return json.loads(lines[-1])


# -- the run -----------------------------------------------------------------------------------


class Bench:
    """Owns the cluster, the models on disk and the raw-actor baselines for one run."""

    def __init__(self, plan: Plan, workdir: str):
        self.plan = plan
        self.workdir = Path(workdir)
        self.results: dict[str, Any] = {}
        self.cluster: Any = None
        self.address = ""
        self.clients: dict[bool, Any] = {}
        self.actor_futures: list[Any] = []

    # -- setup -----------------------------------------------------------------------------

    def make_models(self) -> None:
        """Save the models before the cluster starts, the big one in a subprocess.

        The CPU-bound model is calibrated here, on a quiet machine; the big
        model is built in another process so its arrays never touch our RSS.
        """
        from .modules import BenchEcho, BenchSpin, spin

        self.echo_path = str(self.workdir / "echo")
        BenchEcho.train().save(self.echo_path)
        self.spin_rounds = _calibrate(spin, target_s=0.010)
        self.spin_local_ms = min(_timed(lambda: spin(self.spin_rounds)) for _ in range(5)) * 1e3
        self.spin_path = str(self.workdir / "spin")
        BenchSpin.train(rounds=self.spin_rounds).save(self.spin_path)
        self.big_path = str(self.workdir / "big")
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from caikit_dask.example import TextClassifier; "
                "TextClassifier.train(epochs=5, n_features=int(sys.argv[1]), weight_noise=1e-3)"
                ".save(sys.argv[2])",
                str(self.plan.memory_features),
                self.big_path,
            ],
            cwd=REPO,
            check=True,
            timeout=300,
            capture_output=True,
        )
        size = sum(f.stat().st_size for f in Path(self.big_path).rglob("*") if f.is_file())
        self.big_size_mb = size / 2**20
        log(f"big model: {self.big_size_mb:.0f} MB in {time.perf_counter() - started:.1f}s")

    def start_cluster(self) -> None:
        from distributed import Client, LocalCluster

        started = time.perf_counter()
        self.cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
        self.address = self.cluster.scheduler_address
        for direct in (True, False):
            self.clients[direct] = Client(
                self.address, direct_to_workers=direct, set_as_default=False
            )
        # Workers must have the modules registered before a model can load there.
        client = self.clients[True]
        for name in ("benchmarks.modules", "caikit_dask.example"):
            client.run(importlib.import_module, name)
        log(f"cluster {self.address} up in {time.perf_counter() - started:.1f}s")

    def raw_actor(self, direct: bool, worker: str) -> Any:
        """A plain Dask actor on ``worker``, its handle bound to the given client."""
        from .baselines import RawEcho

        client = self.clients[direct]
        future = client.submit(
            RawEcho, actor=True, workers=[worker], allow_other_workers=False, pure=False
        )
        with client.as_current():
            actor = future.result(timeout=60)
        self.actor_futures.append(future)
        return actor

    def load(self, path: str, replicas: int) -> Any:
        """The real DaskModelInitializer path, as caikit.load / caikit.runtime use it."""
        from caikit.core.modules import ModuleConfig

        from caikit_dask import DaskModelInitializer

        initializer = DaskModelInitializer(
            {"connection": {"address": self.address}, "replicas": replicas}, "bench"
        )
        return initializer.init(ModuleConfig.load(path))

    def close(self) -> None:
        from caikit_dask.connection import DaskConnection

        with contextlib.suppress(Exception):
            DaskConnection.close_all()
        for client in self.clients.values():
            with contextlib.suppress(Exception):
                client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=30)

    # -- 0. Ray (own process, before the cluster starts) -----------------------------------

    def ray(self) -> dict:
        if not self.plan.ray:
            return {"skipped": "not run in --smoke mode (use --ray to include it)"}
        plan = self.plan
        return _subprocess_json(
            [
                "benchmarks.ray_baseline",
                f"--rounds={plan.latency_rounds}",
                f"--per-round={plan.latency_per_round}",
                f"--duration={plan.throughput_duration}",
                f"--repeats={plan.throughput_repeats}",
                f"--threads={plan.caller_threads}",
            ],
            timeout=240,
        )

    # -- 1. latency ------------------------------------------------------------------------

    def latency(self) -> dict:
        from .modules import BenchEcho
        from .stats import interleaved_latency

        self.echo = self.load(self.echo_path, replicas=1)
        worker = self.echo.replicas[0]["worker"]
        self.raw_direct = self.raw_actor(True, worker)
        self.raw_scheduler = self.raw_actor(False, worker)
        local = BenchEcho.load(self.echo_path)
        proxy, direct, via_scheduler = self.echo, self.raw_direct, self.raw_scheduler
        variants: dict[str, Callable[[], object]] = {
            "proxy": lambda: proxy.run("hello"),
            "local": lambda: local.run("hello"),
            "raw_dask_direct": lambda: direct.ping(1).result(),
            "raw_dask_scheduler": lambda: via_scheduler.ping(1).result(),
            "raw_dask_direct_async": lambda: direct.aping(1).result(),
        }
        result = interleaved_latency(
            variants, self.plan.latency_rounds, self.plan.latency_per_round
        )
        return {"worker": worker, "variants": result}

    # -- 2. concurrent throughput ----------------------------------------------------------

    def throughput(self) -> dict:
        from .stats import interleaved_rates, pipelined_rate, threaded_rate

        plan = self.plan
        threads, duration = plan.caller_threads, plan.throughput_duration
        proxy, direct = self.echo, self.raw_direct
        proxy2 = self.load(self.echo_path, replicas=2)
        try:
            measures = {
                "proxy_threads": lambda: threaded_rate(
                    lambda: proxy.run("hello"), threads, duration
                ),
                "proxy_threads_2_replicas": lambda: threaded_rate(
                    lambda: proxy2.run("hello"), threads, duration
                ),
                "raw_dask_pipelined": lambda: pipelined_rate(
                    lambda i: direct.ping(i), lambda fs: [f.result() for f in fs], 200, duration
                ),
                "raw_dask_threads": lambda: threaded_rate(
                    lambda: direct.ping(1).result(), threads, duration
                ),
            }
            rates = interleaved_rates(measures, plan.throughput_repeats)
        finally:
            proxy2.close()
        return {"threads": threads, "duration_s": duration, "variants": rates}

    # -- 3. scaling with replicas ----------------------------------------------------------

    def scaling(self) -> dict:
        """1 vs 2 replicas, measured in alternating rounds; the ratio is the median of rounds.

        Both proxies stay loaded (idle actors cost nothing) so each round
        compares the two under the same conditions on a machine that may be busy.
        """
        from .stats import threaded_rate

        if getattr(self, "echo", None) is not None:
            self.echo.close()
        plan, path = self.plan, self.spin_path
        on_workers = self.clients[True].run(_spin_ms, self.spin_rounds)
        proxies = {1: self.load(path, replicas=1), 2: self.load(path, replicas=2)}
        rates: dict[int, list[float]] = {1: [], 2: []}
        try:
            sequential = {
                n: statistics.median(_timed(lambda p=p: p.run("x")) for _ in range(5))
                for n, p in proxies.items()
            }
            for _ in range(plan.scaling_repeats):
                for n, proxy in proxies.items():
                    rates[n].append(
                        threaded_rate(
                            lambda p=proxy: p.run("x"), plan.scaling_threads, plan.scaling_duration
                        )
                    )
            workers = {n: sorted({r["worker"] for r in p.replicas}) for n, p in proxies.items()}
        finally:
            for proxy in proxies.values():
                proxy.close()
        result: dict[str, Any] = {
            "rounds": self.spin_rounds,
            "local_call_ms": self.spin_local_ms,
            "worker_call_ms": statistics.median(on_workers.values()),
            "threads": plan.scaling_threads,
            "ratio": statistics.median(b / a for a, b in zip(rates[1], rates[2], strict=True)),
        }
        for n in (1, 2):
            result[f"replicas_{n}"] = {
                "calls_per_s": statistics.median(rates[n]),
                "rounds": rates[n],
                "workers": workers[n],
                "sequential_call_ms": sequential[n] * 1e3,
            }
        return result

    # -- 4. training latency ---------------------------------------------------------------

    def training(self) -> dict:
        from caikit_dask import DaskModelTrainer

        from .modules import BenchEcho
        from .stats import percentile

        trainer = DaskModelTrainer({"connection": {"address": self.address}}, "bench")
        for _ in range(2):  # first calls: import check on workers, event subscriptions
            trainer.train(BenchEcho, sleep=0.0).wait(60)
        submit_ms, after_end_ms, wait_was_late = [], [], 0
        for _ in range(self.plan.trainings):
            started = time.perf_counter()
            future = trainer.train(BenchEcho, sleep=self.plan.train_sleep)
            submit_ms.append((time.perf_counter() - started) * 1e3)
            wait_called = time.time()
            future.wait(60)
            returned = time.time()
            ended = future.load().trained_at
            if ended < wait_called:  # wait() did not block: the sample says nothing
                wait_was_late += 1
                continue
            after_end_ms.append((returned - ended) * 1e3)

        def summary(values: list[float]) -> dict:
            return {
                "n": len(values),
                "p50_ms": percentile(values, 50),
                "p90_ms": percentile(values, 90),
                "max_ms": max(values) if values else float("nan"),
            }

        return {
            "train_sleep_s": self.plan.train_sleep,
            "train_returns": summary(submit_ms),
            "wait_after_end": summary(after_end_ms),
            "discarded_wait_not_blocking": wait_was_late,
        }

    # -- 5. memory -------------------------------------------------------------------------

    def memory(self) -> dict:
        result: dict[str, Any] = {"model_mb": self.big_size_mb}
        for mode in ("local", "dask"):
            args = ["benchmarks.memory_probe", f"--mode={mode}", f"--model={self.big_path}"]
            if mode == "dask":
                args.append(f"--address={self.address}")
            result[mode] = _subprocess_json(args, timeout=300)
        return result

    # -- 6. many trainings -----------------------------------------------------------------

    def scale(self) -> dict:
        from caikit_dask import DaskModelTrainer

        from .modules import BenchEcho

        count = self.plan.scale_trainings
        trainer = DaskModelTrainer({"connection": {"address": self.address}}, "bench-scale")
        trainer.train(BenchEcho).wait(60)
        started = time.perf_counter()
        futures = [trainer.train(BenchEcho) for _ in range(count)]
        submitted = time.perf_counter() - started
        started = time.perf_counter()
        statuses = [future.get_info().status.name for future in futures]
        read = time.perf_counter() - started
        started = time.perf_counter()
        for future in futures:
            future.wait(300)
        drained = time.perf_counter() - started
        started = time.perf_counter()
        final = [future.get_info().status.name for future in futures]
        read_final = time.perf_counter() - started
        reattach = self._reattach([future.id for future in futures], budget_s=20.0)
        for future in futures:  # not timed: so closing the cluster loses no published results
            future.training.release()
        return {
            "trainings": count,
            "submit_all_s": submitted,
            "submit_per_train_ms": submitted / count * 1e3,
            "get_info_all_s": read,
            "get_info_per_call_ms": read / count * 1e3,
            "statuses_at_read": dict(sorted(_count(statuses).items())),
            "all_done_after_submit_s": drained,
            "get_info_all_done_s": read_final,
            "final_statuses": dict(sorted(_count(final).items())),
            "reattach": reattach,
        }

    def _reattach(self, ids: list[str], budget_s: float) -> dict:
        """Statuses as a restarted runtime reads them: a new client, get_model_future per id."""
        from caikit_dask import DaskModelTrainer

        # A different connection mapping gets its own client (connections are shared by mapping).
        trainer = DaskModelTrainer(
            {"connection": {"address": self.address, "timeout": "29s"}}, "bench-reattach"
        )
        trainer.backend.client  # noqa: B018 - connect outside the timing
        read, statuses, started = 0, [], time.perf_counter()
        for training_id in ids:
            statuses.append(trainer.get_model_future(training_id).get_info().status.name)
            read += 1
            if time.perf_counter() - started > budget_s:
                break
        elapsed = time.perf_counter() - started
        return {
            "read": read,
            "of": len(ids),
            "total_s": elapsed,
            "per_call_ms": elapsed / max(read, 1) * 1e3,
            "budget_s": budget_s,
            "statuses": dict(sorted(_count(statuses).items())),
        }


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _spin_ms(rounds: int) -> float:
    """Run on a worker: the model's own compute time for one call there, in ms."""
    from benchmarks.modules import spin

    return min(_timed(lambda: spin(rounds)) for _ in range(5)) * 1e3


def _calibrate(spin: Callable[[int], int], target_s: float) -> int:
    """Rounds of ``spin`` that take ``target_s`` here (same CPU as the workers)."""
    probe = 2000
    spin(probe)
    per_round = min(_timed(lambda: spin(probe)) for _ in range(5)) / probe
    return max(1, round(target_s / per_round))


def _count(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


# -- report ------------------------------------------------------------------------------------


def _get(data: dict, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def targets(results: dict) -> list[dict]:
    """The issue's targets, each met / not met / n/a with the numbers it was judged on."""
    lat = _get(results, "latency", "variants") or {}
    proxy_p50 = _get(lat, "proxy", "p50_us")
    raw_p50 = _get(lat, "raw_dask_direct", "p50_us")
    ray_p50 = _get(results, "ray", "latency", "p50_us")
    thr = _get(results, "throughput", "variants") or {}
    proxy_rate = _get(thr, "proxy_threads", "calls_per_s")
    pipelined = _get(thr, "raw_dask_pipelined", "calls_per_s")
    ratio = _get(results, "scaling", "ratio")
    train_ms = _get(results, "training", "train_returns", "p50_ms")
    wait_ms = _get(results, "training", "wait_after_end", "p50_ms")
    growth = _get(results, "memory", "dask", "growth_mb")

    def judged(name: str, ok: bool | None, detail: str) -> dict:
        return {"target": name, "met": ok, "detail": detail}

    def both(*values: Any) -> bool:
        return all(isinstance(v, (int, float)) and v == v for v in values)

    return [
        judged(
            "proxy p50 <= Ray actor p50",
            proxy_p50 <= ray_p50 if both(proxy_p50, ray_p50) else None,
            f"{proxy_p50:.0f} us vs {ray_p50:.0f} us" if both(proxy_p50, ray_p50) else "no Ray",
        ),
        judged(
            "proxy p50 <= 1.05x raw Dask actor p50",
            proxy_p50 <= 1.05 * raw_p50 if both(proxy_p50, raw_p50) else None,
            f"{proxy_p50 / raw_p50:.2f}x ({proxy_p50:.0f} vs {raw_p50:.0f} us)"
            if both(proxy_p50, raw_p50)
            else "missing",
        ),
        judged(
            "16-thread throughput >= 4x raw Dask actor pipelined",
            proxy_rate >= 4 * pipelined if both(proxy_rate, pipelined) else None,
            f"{proxy_rate / pipelined:.2f}x ({proxy_rate:.0f} vs {pipelined:.0f} calls/s)"
            if both(proxy_rate, pipelined)
            else "missing",
        ),
        judged(
            "2 replicas >= 1.8x one (CPU-bound)",
            ratio >= 1.8 if both(ratio) else None,
            f"{ratio:.3f}x" if both(ratio) else "missing",
        ),
        judged(
            "train() returns < 20 ms (p50)",
            train_ms < 20 if both(train_ms) else None,
            f"{train_ms:.1f} ms" if both(train_ms) else "missing",
        ),
        judged(
            "wait() returns < 50 ms after the task ends (p50)",
            wait_ms < 50 if both(wait_ms) else None,
            f"{wait_ms:.1f} ms" if both(wait_ms) else "missing",
        ),
        judged(
            "client RSS growth < 10 MB loading a big model (DASK)",
            growth < 10 if both(growth) else None,
            f"{growth:.1f} MB" if both(growth) else "missing",
        ),
    ]


def _fmt(value: Any, spec: str = ".0f") -> str:
    if isinstance(value, (int, float)) and value == value:
        return format(value, spec)
    return "-"


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        pairs = enumerate(zip(cells, widths, strict=True))
        return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in pairs)

    return ["", f"== {title} ==", line(header), line(["-" * w for w in widths])] + [
        line(r) for r in rows
    ]


def report(results: dict) -> str:
    """The human-readable table (ratios are proxy / baseline unless said otherwise)."""
    meta = results["meta"]
    out = [
        f"caikit-dask benchmarks ({meta['plan']}) commit {meta['commit'] or '?'}"
        f"{' (dirty)' if meta['dirty'] else ''}  {meta['date']}",
        f"python {meta['python']}  caikit {meta['caikit']}  dask {meta['dask']}  "
        f"distributed {meta['distributed']}  cpus {meta['cpus']}  {meta['platform']}",
        "LocalCluster: 2 worker processes x 1 thread, 127.0.0.1, scheduler in this process",
        f"load average (1/5/15 min) at start {meta['loadavg_start']}, "
        f"at end {meta.get('loadavg_end')}",
    ]
    foreign = meta.get("foreign_cores") or {}
    if foreign:
        per_section = ", ".join(
            f"{name} {value:.2f}" for name, value in foreign.items() if value is not None
        )
        out.append(
            f"CPU used by other processes (cores, mean): {per_section} "
            "(Ray's daemons detach from this process tree, so the ray figure includes them)"
        )
        judged = [v for k, v in foreign.items() if v is not None and k not in ("ray", "whole run")]
        if max(judged, default=0) > 0.3:
            out.append("WARNING: other work shared the machine; absolute numbers are noisy")
    ray = results.get("ray") or {}
    if "skipped" in ray or "error" in ray:
        out.append(f"Ray baseline skipped: {ray.get('skipped') or ray.get('error')}")
    else:
        out.append(f"Ray {ray.get('ray_version')} (own process, measured before the cluster)")

    for section in SECTIONS:
        if "error" in (results.get(section) or {}):
            out += ["", f"== {section} == FAILED: {results[section]['error']}"]

    lat = _get(results, "latency", "variants")
    if lat:
        proxy = lat["proxy"]["p50_us"]
        names = [
            ("proxy", "proxy.run (DaskModelInitializer, 1 replica)"),
            ("local", "local in-process call"),
            ("raw_dask_direct", "raw Dask actor, direct_to_workers=True"),
            ("raw_dask_scheduler", "raw Dask actor, direct_to_workers=False"),
            ("raw_dask_direct_async", "raw Dask actor, async method (info)"),
        ]
        rows = [
            [label, _fmt(lat[k]["p50_us"]), _fmt(lat[k]["p99_us"]), _ratio(proxy, lat[k]["p50_us"])]
            for k, label in names
        ]
        ray_lat = ray.get("latency")
        rows.append(
            [
                "Ray actor",
                _fmt(ray_lat["p50_us"]),
                _fmt(ray_lat["p99_us"]),
                _ratio(proxy, ray_lat["p50_us"]),
            ]
            if ray_lat
            else ["Ray actor", "skipped", "", ""]
        )
        out += _table(
            f"1. sequential latency, trivial call (n={lat['proxy']['n']} each, interleaved)",
            ["variant", "p50 us", "p99 us", "proxy/this p50"],
            rows,
        )

    thr = _get(results, "throughput", "variants")
    if thr:
        proxy = thr["proxy_threads"]["calls_per_s"]
        threads = results["throughput"]["threads"]
        names = [
            ("proxy_threads", f"proxy.run, {threads} threads, 1 replica"),
            ("proxy_threads_2_replicas", f"proxy.run, {threads} threads, 2 replicas (info)"),
            ("raw_dask_pipelined", "raw Dask actor, pipelined (1 thread, 200 outstanding)"),
            ("raw_dask_threads", f"raw Dask actor, {threads} threads (info)"),
        ]
        rows = [
            [label, _fmt(thr[k]["calls_per_s"]), _ratio(proxy, thr[k]["calls_per_s"])]
            for k, label in names
        ]
        ray_thr = ray.get("throughput") or {}
        for key, label in (
            ("ray_actor_threads", f"Ray actor, {threads} threads"),
            ("ray_actor_pipelined", "Ray actor, pipelined (1 thread, 200 outstanding)"),
        ):
            rate = _get(ray_thr, key, "calls_per_s")
            rows.append(
                [label, _fmt(rate), _ratio(proxy, rate)] if rate else [label, "skipped", ""]
            )
        out += _table(
            "2. concurrent throughput, trivial call (median of rounds)",
            ["variant", "calls/s", "proxy/this"],
            rows,
        )

    sc = results.get("scaling")
    if sc and "ratio" in sc:
        rows = [
            ["the work itself, in this process", _fmt(sc["local_call_ms"], ".1f"), "", "", ""],
            ["the work itself, on a worker", _fmt(sc["worker_call_ms"], ".1f"), "", "", ""],
        ]
        for n in (1, 2):
            r = sc[f"replicas_{n}"]
            rows.append(
                [
                    f"{n} replica(s) on {len(r['workers'])} worker(s), {sc['threads']} threads",
                    _fmt(r["sequential_call_ms"], ".1f"),
                    _fmt(r["calls_per_s"], ".1f"),
                    _fmt(sc["ratio"] if n == 2 else 1.0, ".2f") + "x",
                    _fmt(1e3 / sc["worker_call_ms"] * n, ".0f"),
                ]
            )
        out += _table(
            "3. scaling, CPU-bound model (~10 ms/call, GIL-bound)",
            ["variant", "1 call ms", "calls/s", "vs 1 (median of rounds)", "ideal (n x 1/work)"],
            rows,
        )

    tr = results.get("training")
    if tr and "train_returns" in tr:
        rows = [
            [
                "trainer.train() returns",
                _fmt(tr["train_returns"]["p50_ms"], ".1f"),
                _fmt(tr["train_returns"]["p90_ms"], ".1f"),
                _fmt(tr["train_returns"]["max_ms"], ".1f"),
                str(tr["train_returns"]["n"]),
            ],
            [
                "task end (worker clock) -> wait() returns",
                _fmt(tr["wait_after_end"]["p50_ms"], ".1f"),
                _fmt(tr["wait_after_end"]["p90_ms"], ".1f"),
                _fmt(tr["wait_after_end"]["max_ms"], ".1f"),
                str(tr["wait_after_end"]["n"]),
            ],
        ]
        out += _table(
            f"4. training (trivial module, {tr['train_sleep_s']:g}s train)",
            ["step", "p50 ms", "p90 ms", "max ms", "n"],
            rows,
        )

    mem = results.get("memory")
    if mem and "dask" in mem:
        local, dask = mem["local"]["growth_mb"], mem["dask"]["growth_mb"]
        rows = [
            ["LOCAL (caikit.load)", _fmt(local, ".1f"), _fmt(mem["local"]["load_s"], ".2f"), ""],
            [
                "DASK (DaskModelInitializer.init)",
                _fmt(dask, ".1f"),
                _fmt(mem["dask"]["load_s"], ".2f"),
                _fmt(dask / local if local else None, ".3f") + "x",
            ],
        ]
        out += _table(
            f"5. client RSS growth loading a {mem['model_mb']:.0f} MB model (fresh process each)",
            ["loader", "RSS growth MB", "load s", "dask/local"],
            rows,
        )

    sc6 = results.get("scale")
    if sc6 and "trainings" in sc6:
        n = sc6["trainings"]
        rows = [
            [
                f"submit {n} trainings",
                _fmt(sc6["submit_all_s"], ".2f"),
                _fmt(sc6["submit_per_train_ms"], ".2f"),
            ],
            [
                f"get_info() on {n} (just submitted)",
                _fmt(sc6["get_info_all_s"], ".3f"),
                _fmt(sc6["get_info_per_call_ms"], ".3f"),
            ],
            [f"all {n} done, after submit", _fmt(sc6["all_done_after_submit_s"], ".2f"), ""],
            [
                f"get_info() on {n} (all done)",
                _fmt(sc6["get_info_all_done_s"], ".3f"),
                _fmt(sc6["get_info_all_done_s"] / n * 1e3, ".3f"),
            ],
        ]
        re_ = sc6.get("reattach") or {}
        if re_:
            partial = (
                "" if re_["read"] == re_["of"] else f" (stopped at {re_['budget_s']:g}s budget)"
            )
            rows.append(
                [
                    f"get_model_future+get_info, new client: {re_['read']}/{re_['of']}{partial}",
                    _fmt(re_["total_s"], ".2f"),
                    _fmt(re_["per_call_ms"], ".2f"),
                ]
            )
        out += _table("6. many trainings", ["step", "total s", "per call ms"], rows)
        out.append(
            f"statuses at first read: {sc6['statuses_at_read']}; final: {sc6['final_statuses']}"
        )
        if re_:
            out.append(f"statuses read from the new client: {re_['statuses']}")

    rows = [
        [t["target"], {True: "met", False: "NOT MET", None: "n/a"}[t["met"]], t["detail"]]
        for t in results.get("targets", [])
    ]
    out += _table("targets", ["target", "result", "measured"], rows)
    return "\n".join(out)


def _ratio(numerator: Any, denominator: Any) -> str:
    if not numerator or not denominator:
        return "-"
    value = numerator / denominator
    return f"{value:.1f}x" if value >= 10 else f"{value:.2f}x"


# -- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    from .stats import ForeignLoad

    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it all runs")
    parser.add_argument("--json", metavar="PATH", help="where to write the JSON results")
    ray_group = parser.add_mutually_exclusive_group()
    ray_group.add_argument("--ray", dest="ray", action="store_true", default=None)
    ray_group.add_argument("--no-ray", dest="ray", action="store_false")
    parser.add_argument(
        "--only", nargs="+", choices=SECTIONS, help="run only these benchmarks (for development)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is not met")
    args = parser.parse_args(argv)

    plan = SMOKE if args.smoke else FULL
    if args.ray is not None:
        plan = dataclasses.replace(plan, ray=args.ray)
    _worker_environment()
    wanted = args.only or list(SECTIONS)
    started = time.perf_counter()
    results: dict[str, Any] = {"meta": _meta(plan)}
    results["meta"]["foreign_cores"] = foreign = {}
    load = ForeignLoad().start()
    load_start = time.monotonic()
    failed = False
    with tempfile.TemporaryDirectory(prefix="caikit-dask-bench-") as workdir:
        bench = Bench(plan, workdir)

        def section(name: str, run: Callable[[], dict]) -> None:
            nonlocal failed
            log(f"{name} ...")
            t0, m0 = time.perf_counter(), time.monotonic()
            try:
                results[name] = run()
            except Exception as err:  # noqa: BLE001 - record it, run the other benchmarks
                failed = True
                traceback.print_exc()
                results[name] = {"error": f"{type(err).__name__}: {err}"}
            foreign[name] = load.mean(m0, time.monotonic())
            log(f"{name} done in {time.perf_counter() - t0:.1f}s")
            gc.collect()

        try:
            bench.make_models()
            if "latency" in wanted or "throughput" in wanted:
                section("ray", bench.ray)
            bench.start_cluster()
            needs_echo = {"latency", "throughput"} & set(wanted)
            for name in SECTIONS:
                if name in wanted or (name == "latency" and needs_echo):
                    section(name, getattr(bench, name))
        finally:
            bench.close()
            load.stop()
    foreign["whole run"] = load.mean(load_start)
    results["targets"] = targets(results)
    results["meta"]["wall_s"] = time.perf_counter() - started
    results["meta"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    path = Path(args.json) if args.json else _default_json(results["meta"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str))
    print(report(results))
    print(f"\nwall time {results['meta']['wall_s']:.1f}s; JSON written to {path}")
    if failed:
        return 2
    if args.strict and any(t["met"] is False for t in results["targets"]):
        return 1
    return 0


def _default_json(meta: dict) -> Path:
    stamp = meta["date"].replace(":", "").replace("-", "")
    return RESULTS / f"{stamp}-{meta['commit'] or 'nogit'}-{meta['plan']}.json"
