"""pytest plugin for running caikit's own runtime suites (from caikit's sdist) with DASK.

Loaded by ``.ci/caikit_suites.py`` (``-p caikit_suites_plugin``) into a run of caikit's
tests; not a test module of ours. With ``CAIKIT_SUITES_MODE=DASK`` it marks the tests
listed in ``expected_differences.txt`` xfail with their reason, fails the run on a listed
test that was not collected (a stale line), and checks at the end that models were really
served through DASK (the config reached caikit); with ``LOCAL`` it only checks that LOCAL
was in use.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

EXPECTED = Path(__file__).with_name("expected_differences.txt")
MODE_VARIABLE = "CAIKIT_SUITES_MODE"


def expected_differences(path: Path = EXPECTED) -> dict[str, str]:
    """node id -> reason, from the reviewed file (``#`` starts a comment line)."""
    listed = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        node_id, _, reason = line.partition("  ")
        if not reason.strip():
            raise pytest.UsageError(f"{path}: {node_id} has no reason")
        listed[node_id] = reason.strip()
    return listed


def _mode() -> str:
    return os.environ.get(MODE_VARIABLE, "LOCAL").upper()


def pytest_collection_modifyitems(session: pytest.Session, config, items) -> None:
    if _mode() != "DASK":
        return
    listed = expected_differences()
    collected = {item.nodeid for item in items}
    stale = sorted(node_id for node_id in listed if node_id not in collected)
    if stale and not config.getoption("lf"):  # a --last-failed run collects fewer
        raise pytest.UsageError(
            f"{EXPECTED.name} lists tests these suites do not have: {', '.join(stale)}"
        )
    for item in items:
        if item.nodeid in listed:
            item.add_marker(pytest.mark.xfail(reason=listed[item.nodeid], strict=False))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if the default initializer was not the mode under test."""
    import caikit

    default = caikit.get_config().model_management.initializers.default.type
    mode = _mode()
    problem = None
    if default != mode:
        problem = f"the default initializer is {default}, not {mode} (check CONFIG_FILES)"
    elif mode == "DASK":
        proxy = sys.modules.get("caikit_dask.loading.proxy")
        if proxy is None or not proxy._proxy_classes:
            problem = "no model was loaded through DASK"
    if problem:
        session.config.get_terminal_writer().line(f"caikit suites: {problem}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
