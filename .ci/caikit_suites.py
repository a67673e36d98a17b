"""caikit's own runtime test suites, run with LOCAL and then with DASK as the default.

    python .ci/caikit_suites.py [--modes LOCAL,DASK] [--timeout 900] [--keep DIR]

Run with the interpreter of the venv under test. It downloads the sdist of the caikit
installed there (``pip download --no-binary :all: --no-deps caikit==<version>``), unpacks
its ``tests/`` only (the installed caikit is the one under test), and runs caikit's
``tests/runtime/test_grpc_server.py`` and ``tests/runtime/http_server/`` once per mode:
LOCAL as caikit ships them, then DASK as the default trainer and initializer through
``tests/caikit_suites/dask_default.yml`` (CONFIG_FILES, as a user would), on an embedded
LocalCluster, with caikit's ``sample_lib`` importable on the workers through PYTHONPATH.

Every test must pass with DASK, except those listed in
``tests/caikit_suites/expected_differences.txt`` (marked xfail with their reason). A test
that fails is run once more (pytest's ``--last-failed``): some of caikit's tests poll their
server with a 0.1 s timeout and fail now and then on a busy machine, with LOCAL as with
DASK; one that passes the second time is listed as flaky. A test that fails twice with DASK
fails the run unless it failed twice with LOCAL as well: that one is caikit's (or the
machine's), and is listed as such; so is a test only LOCAL fails. Each run
has a timeout: caikit's harness can keep the interpreter alive after a failed test (a
non-daemon ThreadInterrupter left running), which must not hang CI. Prints a table per
suite and mode, and exits non-zero if a run failed, timed out, or served nothing through
the mode it tested.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SUITES_DIR = REPO / "tests" / "caikit_suites"
SUITES = ("tests/runtime/test_grpc_server.py", "tests/runtime/http_server/")
TEST_TIMEOUT = 120  # seconds per test (pytest-timeout): a hung test fails alone


def caikit_tests(workdir: Path) -> tuple[str, Path]:
    """The installed caikit's version and its sdist's tests/, unpacked under ``workdir``."""
    version = importlib.metadata.version("caikit")
    download = workdir / "sdist"
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:"]
        + ["--no-deps", "--dest", str(download), f"caikit=={version}"],
        check=True,
    )
    [sdist] = download.glob("caikit-*.tar.gz")
    root = workdir / f"caikit-{version}"
    prefix = f"caikit-{version}/tests/"
    with tarfile.open(sdist) as archive:
        members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
        archive.extractall(workdir, members=members, filter="data")
    return version, root


def run_mode(root: Path, mode: str, timeout: float) -> dict:
    """Both suites with ``mode`` as the default, then the failed tests once more; results."""
    result = _run_pytest(root, mode, timeout)
    if result["failed"] and not result["timed_out"]:
        again = _run_pytest(root, mode, timeout, only_failed=True)
        still = set(result["failed"] if again["timed_out"] else again["failed"])
        result["flaky"] = [test for test in result["failed"] if test not in still]
        result["failed"] = [test for test in result["failed"] if test in still]
        result["seconds"] += again["seconds"]
        result["exit"] = again["exit"]
        for test in result["flaky"]:  # counted as passed, as its second run did
            tally = result["suites"][_suite_of(test.partition("::")[0])]
            tally["failed"], tally["passed"] = tally["failed"] - 1, tally["passed"] + 1
    return result


def _run_pytest(root: Path, mode: str, timeout: float, only_failed: bool = False) -> dict:
    """One pytest run of both suites (or of the last run's failures) with ``mode``."""
    junit = root / f"results-{mode}{'-again' if only_failed else ''}.xml"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root / "tests" / "fixtures"), str(root), str(SUITES_DIR), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env["CAIKIT_SUITES_MODE"] = mode
    env.pop("CONFIG_FILES", None)
    if mode == "DASK":
        env["CONFIG_FILES"] = str(SUITES_DIR / "dask_default.yml")
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rfE",
        "-o",
        f"cache_dir=.cache-{mode}",  # one per mode, for --last-failed
        "-p",
        "caikit_suites_plugin",
        "-o",
        f"timeout={TEST_TIMEOUT}",
        f"--rootdir={root}",
        f"--junitxml={junit}",
        *(["--last-failed"] if only_failed else []),
        *SUITES,
    ]
    what = "the failed tests once more" if only_failed else "caikit's runtime suites"
    print(f"--- {what} with {mode}: {' '.join(command[2:])}", flush=True)
    started = time.monotonic()
    try:
        process = subprocess.run(command, cwd=root, env=env, timeout=timeout)
        exit_code, timed_out = process.returncode, False
    except subprocess.TimeoutExpired:
        exit_code, timed_out = None, True
    return {
        "mode": mode,
        "exit": exit_code,
        "timed_out": timed_out,
        "seconds": time.monotonic() - started,
        "suites": _counts(junit) if junit.exists() else {},
        "failed": _failed(junit) if junit.exists() else [],
        "flaky": [],
    }


def _failed(junit: Path) -> list[str]:
    """The failed tests' names (``file-ish classname::name``), from pytest's junit xml."""
    failed = [
        f"{case.get('classname')}::{case.get('name')}"
        for case in ElementTree.parse(junit).iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    return list(dict.fromkeys(failed))  # a failed test and its failed teardown: once


def _counts(junit: Path) -> dict[str, dict[str, int]]:
    """passed / failed / skipped / xfailed per suite, from pytest's junit xml."""
    counts: dict[str, dict[str, int]] = {}
    for case in ElementTree.parse(junit).iter("testcase"):
        suite = _suite_of(case.get("classname", ""))
        tally = counts.setdefault(
            suite, dict.fromkeys(("passed", "failed", "skipped", "xfailed"), 0)
        )
        skipped = case.find("skipped")
        if case.find("failure") is not None or case.find("error") is not None:
            tally["failed"] += 1
        elif skipped is not None:
            xfailed = skipped.get("type") == "pytest.xfail"
            tally["xfailed" if xfailed else "skipped"] += 1
        else:
            tally["passed"] += 1
    return counts


def _suite_of(classname: str) -> str:
    """The suite a junit classname (dotted test path) belongs to."""
    return next(
        (
            s
            for s in SUITES
            if classname.startswith(s.rstrip("/").replace("/", ".").removesuffix(".py"))
        ),
        classname,
    )


def report(version: str, results: list[dict]) -> bool:
    """Print the table and the failures; True unless DASK failed what LOCAL passed, or a
    run timed out, gave no results, or ended in an error of its own."""
    print(f"\n=== caikit {version}: caikit's runtime suites, LOCAL vs DASK as the default")
    print("| suite | mode | passed | failed | skipped | expected differences (xfail) | run |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ok = True
    for result in results:
        run = "timed out" if result["timed_out"] else f"exit {result['exit']}"
        run += f", {result['seconds']:.0f}s"
        # 0: all passed; 1: tests failed (judged below); anything else is the run's own error
        ok = ok and result["exit"] in (0, 1) and (result["exit"] == 0 or result["failed"])
        for suite in SUITES:
            c = result["suites"].get(suite)
            if c is None:
                print(f"| `{suite}` | {result['mode']} | - | - | - | - | {run} (no results) |")
                ok = False
                continue
            print(
                f"| `{suite}` | {result['mode']} | {c['passed']} | {c['failed']} | "
                f"{c['skipped']} | {c['xfailed']} | {run} |"
            )
    by_mode = {result["mode"]: set(result["failed"]) for result in results}
    for result in results:
        mode = result["mode"]
        for test in result["failed"]:
            others = [m for m, failed in by_mode.items() if m != mode and test in failed]
            if mode == "DASK" and not others:
                ok = False
                print(f"FAILED with DASK (twice; LOCAL passed it): {test}")
            else:
                also = f", fails with {', '.join(others)} too" if others else ""
                print(f"FAILED with {mode} (twice{also}): {test}: caikit's, not DASK's")
        for test in result["flaky"]:
            print(f"FLAKY with {mode} (failed, then passed when run again): {test}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modes", default="LOCAL,DASK", help="comma-separated, in order")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mode's run")
    parser.add_argument("--keep", type=Path, help="unpack here and keep it (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="caikit-suites-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        version, root = caikit_tests(workdir)
        results = [
            run_mode(root, mode.strip().upper(), args.timeout) for mode in args.modes.split(",")
        ]
        return 0 if report(version, results) else 1
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
