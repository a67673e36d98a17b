"""Every fenced example in docs/*.md runs here, against a LocalCluster.

- ``python``: run with the example's scheduler address (``tcp://scheduler:8786`` and the
  like) replaced by the cluster's, and the dashboard's (``http://scheduler:8787``) by its
  HTTP server's.
- ``yaml``: parsed; a caikit config builds each DASK trainer, initializer and job
  predictor it declares (the config check a runtime does at start); any
  ``caikit_dask_*`` metric an alert rule names must be one caikit-dask exports.
- ``bash`` / ``sh``: run, with ``caikit-dask`` as ``python -m caikit_dask.cli`` and the
  addresses replaced.
- ``text``: output shown to the reader, not run.

A block that cannot run here is marked in the markdown with ``<!-- not run: why -->`` on
the line before it and shows up as skipped with that reason; a block with no language,
or in a language not listed above, fails.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cluster_support import REPO_DIR, worker_env
from metrics_support import exported_names, family_of

DOCS = sorted((REPO_DIR / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\S*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.+?)\s*-->$")
SCHEDULER = re.compile(r"tcp://[a-z][a-z-]*:8786")
DASHBOARD = re.compile(r"http://[a-z][a-z-]*:8787")
KNOWN = ("python", "yaml", "bash", "sh", "text")


class Block:
    def __init__(self, page: Path, line: int, language: str, code: str, not_run: str | None):
        self.page, self.line, self.language, self.code = page, line, language, code
        self.not_run = not_run

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}:{self.language or 'none'}"


def blocks(page: Path) -> list[Block]:
    found, lines = [], page.read_text().splitlines()
    index = 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if match is None:
            index += 1
            continue
        start, language = index, match.group(1)
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
        previous = lines[start - 1].strip() if start else ""
        marked = NOT_RUN.match(previous)
        code = "\n".join(lines[start + 1 : end]) + "\n"
        found.append(Block(page, start + 1, language, code, marked.group(1) if marked else None))
        index = end + 1
    return found


ALL = [block for page in DOCS for block in blocks(page)]


def test_the_docs_have_examples():
    assert {b.page.name for b in ALL} >= {"operations.md", "training.md"}


@pytest.fixture(scope="module")
def addresses(local_cluster):
    port = local_cluster.scheduler_info["services"]["dashboard"]
    return local_cluster.scheduler_address, f"http://127.0.0.1:{port}"


def localized(code: str, addresses: tuple[str, str]) -> str:
    scheduler, dashboard = addresses
    return DASHBOARD.sub(dashboard, SCHEDULER.sub(scheduler, code))


@pytest.mark.parametrize("block", ALL, ids=[b.id for b in ALL])
def test_example(block: Block, addresses, tmp_path, monkeypatch):
    assert block.language in KNOWN, (
        f"{block.id}: give the block a language ({', '.join(KNOWN)}) so it can be run"
    )
    if block.not_run:
        pytest.skip(f"marked in {block.page.name}: not run: {block.not_run}")
    code = localized(block.code, addresses)
    if block.language == "text":
        return
    if block.language == "python":
        monkeypatch.chdir(tmp_path)
        exec(compile(code, block.id, "exec"), {"__name__": "__docs__"})  # noqa: S102
    elif block.language == "yaml":
        check_yaml(block, code)
    else:
        run_shell(block, code, tmp_path)


def check_yaml(block: Block, code: str) -> None:
    documents = [doc for doc in yaml.safe_load_all(code) if doc is not None]
    assert documents, f"{block.id} is empty"
    for doc in documents:
        management = doc.get("model_management") if isinstance(doc, dict) else None
        if management:
            build_adapters(block, management)
    named = set(re.findall(r"caikit_dask_[a-z_]+", code))
    if named:
        unknown = {family_of(n) for n in named} - exported_names()
        assert not unknown, f"{block.id} names metrics caikit-dask does not export: {unknown}"


def build_adapters(block: Block, management: dict) -> None:
    """What a runtime builds from the config at start (no connection is opened)."""
    from caikit.core.toolkit.factory import ImportableFactory  # noqa: F401 - caikit present

    from caikit_dask import DaskJobPredictor, DaskModelInitializer, DaskModelTrainer

    adapters = {
        "trainers": DaskModelTrainer,
        "initializers": DaskModelInitializer,
        "job_predictors": DaskJobPredictor,
    }
    built = 0
    for section, adapter in adapters.items():
        for name, entry in (management.get(section) or {}).items():
            assert entry["type"] == "DASK", f"{block.id}: {section}.{name} is not DASK"
            if "import_class" in entry:
                module, _, attribute = entry["import_class"].rpartition(".")
                assert getattr(__import__(module, fromlist=[attribute]), attribute) is adapter
            adapter(entry.get("config") or {}, f"docs-{name}")
            built += 1
    assert built, f"{block.id}: model_management declares no DASK adapter"


def run_shell(block: Block, code: str, tmp_path: Path) -> None:
    cli = f"{sys.executable} -m caikit_dask.cli"
    script = re.sub(r"(^|[|;&]\s*)caikit-dask\b", lambda m: m.group(1) + cli, code, flags=re.M)
    script = re.sub(
        r"(^|[|;&]\s*)python\b", lambda m: m.group(1) + sys.executable, script, flags=re.M
    )
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=worker_env(),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout}\n{done.stderr}"
