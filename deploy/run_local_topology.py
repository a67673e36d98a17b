#!/usr/bin/env python
"""Run the deploy/base topology as local processes on 127.0.0.1.

Why: to try the Kubernetes setup without a cluster. The same pieces start as in
deploy/base: ``dask scheduler`` (with the manifest's environment), one CPU worker,
one worker with the GPU group's ``--resources``, and ``python -m caikit.runtime``
with the runtime ConfigMap's config, its scheduler address and ports rewritten to
local ones and its model directories to a local folder standing in for the
shared volume. The runtime serves the ConfigMap's ``runtime.library``
(``caikit_dask``: the DASK trainer/initializer and the bundled example library);
``--check`` also requires that library's task endpoints to be up.

    python deploy/run_local_topology.py            # run until Ctrl-C
    python deploy/run_local_topology.py --check    # start, check health, stop, exit 0
    python deploy/run_local_topology.py --no-runtime --check   # Dask part only
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

BASE_DIR = Path(__file__).resolve().parent / "base"
HOST = "127.0.0.1"


class TopologyError(RuntimeError):
    """A process did not come up in time or exited early; the message names it."""


def free_port() -> int:
    """A port that nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def load_base() -> dict[str, dict]:
    """The base manifests by kind/name, read with the files kustomization.yaml lists."""
    kustomization = yaml.safe_load((BASE_DIR / "kustomization.yaml").read_text())
    objects = {}
    for name in kustomization["resources"]:
        for doc in yaml.safe_load_all((BASE_DIR / name).read_text()):
            if doc:
                objects[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return objects


def runtime_config(objects: dict[str, dict]) -> dict:
    """The caikit config from the runtime ConfigMap."""
    configmap = next(o for k, o in objects.items() if k.startswith("ConfigMap/"))
    return yaml.safe_load(configmap["data"]["runtime.yaml"])


def local_runtime_config(config: dict, scheduler: str, ports: dict, workdir: Path) -> dict:
    """The ConfigMap's config pointed at local processes, ports and folders."""
    config = copy.deepcopy(config)
    management = config["model_management"]
    for section in ("trainers", "initializers"):
        for entry in management.get(section, {}).values():
            connection = entry.get("config", {}).get("connection")
            if connection and "address" in connection:
                connection["address"] = scheduler
    runtime = config["runtime"]
    runtime["grpc"]["port"] = ports["grpc"]
    runtime["http"]["port"] = ports["http"]
    runtime.setdefault("metrics", {})["port"] = ports["metrics"]
    runtime["grpc"]["unix_socket_path"] = ""  # no shared /tmp/mmesh socket between runs
    runtime["local_models_dir"] = str(workdir / "shared" / "models")
    runtime.setdefault("training", {})["output_dir"] = str(workdir / "shared" / "training_output")
    return config


def scheduler_env(objects: dict[str, dict]) -> dict[str, str]:
    """Environment of the DaskCluster's scheduler container (e.g. its HTTP routes)."""
    cluster = next(o for k, o in objects.items() if k.startswith("DaskCluster/"))
    container = cluster["spec"]["scheduler"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def gpu_worker_resources(objects: dict[str, dict]) -> str:
    """The ``--resources`` value of the GPU DaskWorkerGroup's workers."""
    for key, obj in objects.items():
        if key.startswith("DaskWorkerGroup/"):
            args = obj["spec"]["worker"]["spec"]["containers"][0]["args"]
            if "--resources" in args:
                return args[args.index("--resources") + 1]
    raise TopologyError("deploy/base has no DaskWorkerGroup with --resources")


class Topology:
    """The processes, started in order and stopped in reverse."""

    def __init__(self, workdir: Path, python: str = sys.executable):
        self.workdir = workdir
        self.python = python
        self.logs = workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, args: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=self.workdir,
            # Own process group: the terminal's Ctrl-C reaches only us, and we stop the
            # children in order; a nanny's worker subprocess goes with its group.
            start_new_session=True,
        )
        log.close()
        self.processes.append((name, process))
        return process

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logs / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        for name, process in self.processes:
            if process.poll() is not None:
                raise TopologyError(
                    f"{name} exited with code {process.returncode}:\n{self.log_tail(name)}"
                )

    def wait_for(self, what: str, probe, deadline: float) -> None:
        """Poll ``probe`` until it returns true; fail at the deadline or if a process died."""
        while True:
            self.check_alive()
            with contextlib.suppress(OSError, ValueError):
                if probe():
                    return
            if time.monotonic() > deadline:
                raise TopologyError(f"timed out waiting for {what}")
            time.sleep(0.2)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM each process group, newest first; SIGKILL what outlives ``grace``."""
        while self.processes:
            name, process = self.processes.pop()
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(grace)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
            # The nanny's worker may linger in the group after the nanny itself exited.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)


def tcp_open(port: int) -> bool:
    with socket.create_connection((HOST, port), timeout=1):
        return True


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except urllib.error.URLError:
        return False


def served_tasks(http_url: str) -> list[str]:
    """The task endpoints (``/api/v1/task/<task>``) the runtime's HTTP server exposes."""
    with urllib.request.urlopen(f"{http_url}/openapi.json", timeout=10) as response:
        paths = json.load(response)["paths"]
    prefix = "/api/v1/task/"
    return sorted(
        p[len(prefix) :] for p in paths if p.startswith(prefix) and "/" not in p[len(prefix) :]
    )


def workers_ready(address: str, expected: dict[str, dict]) -> bool:
    """True once every expected worker name is connected with its resources."""
    from distributed import Client

    with Client(address, timeout=5) as client:
        workers = client.scheduler_info(n_workers=-1)["workers"].values()
        seen = {w["name"]: w.get("resources", {}) for w in workers}
    return all(name in seen and seen[name] == res for name, res in expected.items())


def parse_resources(value: str) -> dict[str, float]:
    pairs = value.replace(",", " ").split()
    return {k: float(v) for k, v in (pair.split("=") for pair in pairs)}


def run(args: argparse.Namespace, topology: Topology) -> dict[str, str]:
    """Start everything and wait until it is ready; return the addresses."""
    deadline = time.monotonic() + args.timeout
    objects = load_base()
    dask = [topology.python, "-m", "dask"]
    port, dashboard = free_port(), free_port()
    scheduler = f"tcp://{HOST}:{port}"
    topology.start(
        "scheduler",
        [*dask, "scheduler", "--host", HOST, "--port", str(port)]
        + ["--dashboard-address", f"{HOST}:{dashboard}"],
        env=scheduler_env(objects),
    )
    topology.wait_for(
        "the scheduler", lambda: http_ok(f"http://{HOST}:{dashboard}/health"), deadline
    )

    gpu = gpu_worker_resources(objects)
    workers = {"cpu-0": {}, "gpu-0": parse_resources(gpu)}
    for name, resources in workers.items():
        extra = ["--resources", gpu] if resources else []
        topology.start(
            f"worker-{name}",
            [*dask, "worker", scheduler, "--name", name, "--host", HOST, "--nthreads", "1"]
            + ["--dashboard-address", f"{HOST}:0"]
            + ["--local-directory", str(topology.workdir / f"dask-{name}"), *extra],
        )
    topology.wait_for("the workers", lambda: workers_ready(scheduler, workers), deadline)

    addresses = {
        "scheduler": scheduler,
        "dashboard": f"http://{HOST}:{dashboard}/status",
        "workers": ", ".join(f"{n} {r or ''}".strip() for n, r in workers.items()),
    }
    if args.no_runtime:
        return addresses

    ports = {"grpc": free_port(), "http": free_port(), "metrics": free_port()}
    config = local_runtime_config(runtime_config(objects), scheduler, ports, topology.workdir)
    for folder in (
        config["runtime"]["local_models_dir"],
        config["runtime"]["training"]["output_dir"],
    ):
        Path(folder).mkdir(parents=True, exist_ok=True)
    config_file = topology.workdir / "runtime.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    topology.start(
        "runtime", [topology.python, "-m", "caikit.runtime"], env={"CONFIG_FILES": str(config_file)}
    )
    health = f"http://{HOST}:{ports['http']}/health"
    topology.wait_for("the runtime HTTP server", lambda: http_ok(health), deadline)
    topology.wait_for("the runtime gRPC server", lambda: tcp_open(ports["grpc"]), deadline)
    http_url = f"http://{HOST}:{ports['http']}"
    library = config["runtime"]["library"]
    tasks = served_tasks(http_url)
    if not tasks:
        raise TopologyError(f"the runtime serves no task of its library {library}")
    addresses.update(
        {
            "runtime gRPC": f"{HOST}:{ports['grpc']}",
            "runtime HTTP": http_url,
            "runtime library": f"{library} (tasks: {', '.join(tasks)})",
            "runtime config": str(config_file),
        }
    )
    return addresses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="start, check health, stop")
    parser.add_argument("--no-runtime", action="store_true", help="only the Dask processes")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to get ready")
    parser.add_argument("--workdir", type=Path, help="logs, config, shared folder (temp dir)")
    parser.add_argument("--python", default=sys.executable, help="interpreter for all processes")
    args = parser.parse_args(argv)

    with contextlib.ExitStack() as stack:
        if args.workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="caikit-dask-")))
        else:
            workdir = args.workdir.resolve()
            workdir.mkdir(parents=True, exist_ok=True)
        topology = Topology(workdir, python=args.python)
        stack.callback(topology.stop)

        def on_signal(signum, frame):
            raise KeyboardInterrupt

        # Also SIGINT: a shell starts background jobs with it ignored.
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            addresses = run(args, topology)
            width = max(map(len, addresses))
            for name, value in addresses.items():
                print(f"{name:<{width}}  {value}", flush=True)
            print(f"{'logs':<{width}}  {topology.logs}", flush=True)
            if args.check:
                topology.check_alive()
                print("check: ok", flush=True)
                return 0
            print("running; Ctrl-C stops everything", flush=True)
            while True:
                topology.check_alive()
                time.sleep(1)
        except TopologyError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            return 1
        except KeyboardInterrupt:
            print("stopping", flush=True)
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
