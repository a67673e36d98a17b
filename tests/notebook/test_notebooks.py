"""The notebooks under notebooks/, executed top to bottom in a real Jupyter kernel.

Each notebook runs in a fresh ``python3`` kernel of this interpreter (nbclient +
ipykernel, from the ``notebook`` extra); the checks read the cells' outputs, so a
notebook that runs but shows the wrong thing fails too. Cells tagged
``needs-cluster`` (a real remote scheduler or Kubernetes) are left out, and only
checked to compile.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="needs the notebook extra (nbformat)")
nbclient = pytest.importorskip("nbclient", reason="needs the notebook extra (nbclient)")
pytest.importorskip("ipykernel", reason="needs the notebook extra (ipykernel)")
pytest.importorskip("jupyter_client", reason="needs the notebook extra (jupyter-client)")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT = 240
NEEDS_CLUSTER = "needs-cluster"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"


def _kernel_name() -> str:
    """The python3 kernel, checked to be this interpreter (jupyter_client maps the
    native kernel name to ``sys.executable`` when ipykernel is importable)."""
    from jupyter_client.kernelspec import KernelSpecManager

    spec = KernelSpecManager().get_kernel_spec("python3")
    executable = spec.argv[0]
    if executable not in (sys.executable, "python", "python3"):
        pytest.skip(f"kernel python3 runs {executable}, not this interpreter {sys.executable}")
    return "python3"


def _load(name: str):
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def _execute(nb, workdir: Path):
    from jupyter_client.manager import KernelManager

    # IPC sockets in the test's directory: no TCP port at all for the kernel.
    kernel = KernelManager(kernel_name=_kernel_name(), transport="ipc")
    kernel.ip = str(workdir / "kernel-ipc")
    client = nbclient.NotebookClient(
        nb,
        km=kernel,
        kernel_name=kernel.kernel_name,
        timeout=CELL_TIMEOUT,
        startup_timeout=120,
        allow_errors=False,
        record_timing=False,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    return nb


class Outputs:
    """An executed notebook's outputs, looked up by a piece of a cell's source."""

    def __init__(self, nb):
        self.cells = [cell for cell in nb.cells if cell.cell_type == "code"]
        widgets = nb.metadata.get("widgets", {}).get(WIDGET_STATE_MIME, {})
        self.widgets = [model for model in widgets.get("state", {}).values()]

    def widget_states(self, model_name: str) -> list[dict]:
        """Final states of the notebook's widgets (nbclient stores them at the end)."""
        return [m["state"] for m in self.widgets if m.get("model_name") == model_name]

    def cell(self, source_part: str):
        matches = [cell for cell in self.cells if source_part in cell.source]
        assert len(matches) == 1, f"expected one code cell containing {source_part!r}"
        return matches[0]

    def text(self, source_part: str) -> str:
        """stdout/stderr and text/plain of one cell."""
        parts = []
        for output in self.cell(source_part).outputs:
            if output.output_type == "stream":
                parts.append(output.text)
            elif output.output_type in ("execute_result", "display_data"):
                parts.append(output.get("data", {}).get("text/plain", ""))
            elif output.output_type == "error":
                parts.append(f"{output.ename}: {output.evalue}")
        return "".join(parts)

    def data(self, source_part: str, mime: str) -> list[str]:
        return [
            str(output["data"][mime])
            for output in self.cell(source_part).outputs
            if output.output_type in ("execute_result", "display_data")
            and mime in output.get("data", {})
        ]

    def errors(self) -> list[str]:
        return [
            f"{output.ename}: {output.evalue}"
            for cell in self.cells
            for output in cell.outputs
            if output.output_type == "error"
        ]


def test_quickstart_runs_end_to_end(tmp_path):
    out = Outputs(_execute(_load("quickstart.ipynb"), tmp_path))
    assert out.errors() == []

    assert "workers: 2" in out.text("cluster = LocalCluster(")
    assert "uses the notebook's client: True" in out.text("trainer = DaskModelTrainer({}")

    submitted = out.text("with dask.annotate(resources=")
    assert re.search(r"status right after submit: (QUEUED|RUNNING)", submitted), submitted
    assert "save path: " in submitted

    # The progress bar: a tqdm widget in a kernel with ipywidgets, else text.
    progress_cell = out.cell("future.wait(progress=True)")
    widgets = out.data("future.wait(progress=True)", WIDGET_MIME)
    bar_text = out.text("future.wait(progress=True)")
    assert widgets or "%|" in bar_text, progress_cell.outputs
    if widgets:  # the bar's final state: all 40 epochs, on the final status
        bars = out.widget_states("FloatProgressModel")
        assert any(bar["value"] == bar["max"] == 40 for bar in bars), bars
        labels = " ".join(str(m.get("value")) for m in out.widget_states("HTMLModel"))
        assert "COMPLETED" in labels and "40/40" in labels, labels

    html = "".join(out.data("display(future)", "text/html"))
    assert 'class="caikit-dask-training"' in html
    assert "COMPLETED" in html and "GPU=1" in html and "dashboard" in html
    text = out.text("display(future)")
    assert ": COMPLETED (caikit-dask example text classifier)" in text
    assert re.search(r"worker: +tcp://127\.0\.0\.1:\d+", text), text
    assert re.search(r"resources: +GPU=1", text), text
    assert re.search(r"progress: +40/40 \(100%\) loss=", text), text

    info = out.text("info = future.get_info()")
    assert "status: COMPLETED" in info
    assert re.search(r"resources: \{'GPU': 1(\.0)?\}", info), info
    assert "completed: 20" in info  # a datetime, not None

    assert "labels: ['negative', 'positive']" in out.text("local_model = future.load()")

    loaded = out.text("proxy = initializer.init(")
    assert "same module id: True" in loaded
    assert "replicas: 2" in loaded
    workers = ast.literal_eval(re.search(r"on workers: (\[.*\])", loaded).group(1))
    assert len(set(workers)) == 2, workers  # one actor per worker
    proxy_html = "".join(out.data("proxy = initializer.init(", "text/html"))
    assert "served from Dask actors" in proxy_html and "2 replica(s)" in proxy_html

    assert "label: positive" in out.text('result = proxy.run("What a wonderful film')

    streamed = out.text("for item in proxy.run_stream(text")
    lines = [line for line in streamed.splitlines() if "->" in line]
    assert len(lines) == 2, streamed
    assert lines[0].startswith("0 ") and "-> positive" in lines[0]
    assert lines[1].startswith("1 ") and "-> negative" in lines[1]

    spread = out.text("labels = [proxy.run(t).label")
    assert "['positive', 'negative', 'positive', 'negative'," in spread

    cleanup = out.text("proxy.close()")
    assert "closed" in cleanup.splitlines()[0] and cleanup.strip().endswith("closed")


def _runnable_part(nb):
    skipped = [cell for cell in nb.cells if NEEDS_CLUSTER in cell.metadata.get("tags", [])]
    nb.cells = [cell for cell in nb.cells if cell not in skipped]
    return nb, skipped


def test_remote_and_kubernetes_runnable_parts(tmp_path):
    nb, skipped = _runnable_part(_load("remote_and_kubernetes.ipynb"))
    assert skipped, f"no cell is tagged {NEEDS_CLUSTER!r}"
    for cell in skipped:
        assert cell.cell_type == "code"
        compile(cell.source, f"<{NEEDS_CLUSTER} cell>", "exec")

    out = Outputs(_execute(nb, tmp_path))
    assert out.errors() == []

    connected = out.text("remote_trainer = DaskModelTrainer(")
    assert "connected by address: True" in connected
    assert "uses the current client: False" in connected
    assert "status: COMPLETED" in out.text("remote_future.wait()")
    assert "found from another client: COMPLETED" in out.text("get_model_future(")
    assert "label: positive" in out.text("remote_model = remote_future.load()")

    invalid = out.text("for bad in (")
    reported = [line for line in invalid.splitlines() if line.startswith("DaskConfigError: ")]
    assert len(reported) == 3, invalid
    assert "connection.address" in invalid and "both set" in invalid

    spec = out.text("spec = kube_cluster_spec(")
    assert "kind: DaskCluster" in spec
    assert "scheduler args: ['dask', 'scheduler'" in spec
    assert "worker args: ['dask', 'worker'" in spec
    group = out.text("gpu_group = gpu_worker_group_spec(")
    assert "kind: DaskWorkerGroup" in group and "nvidia.com/gpu: '1'" in group
    assert "GPU=1" in group

    config = out.text("kube_trainer = DaskModelTrainer(")
    assert "cluster class: dask_kubernetes.operator.KubeCluster" in config
    assert "opened a connection: False" in config


def test_notebook_defined_module_trains_and_serves(tmp_path):
    out = Outputs(_execute(_load("notebook_defined_module.ipynb"), tmp_path))
    assert out.errors() == []
    assert "__main__ 5f0e0d55-2a4e-4f7a-9d65-6c1c1f7ad001" in out.text(
        "class KeywordClassifier(ModuleBase)"
    )

    trained = out.text("future = trainer.train(KeywordClassifier")
    assert "status: COMPLETED" in trained
    assert re.search(r"positive keywords: \[.*'great'", trained), trained

    served = out.text("proxy = DaskModelInitializer(")
    assert "replicas: 2" in served and "label: positive" in served
    assert "0 'I love this phone.' -> positive" in served
    assert "1 'The food was cold and the staff were rude.' -> negative" in served

    refused = out.text("class ReviewClassifier(KeywordClassifier)")
    assert "ByValueError: Module class ReviewClassifier is defined in __main__" in refused
    assert "__main__.Review is a caikit data model class (@dataobject)" in refused
    assert "client.upload_file('my_module.py', load=False)" in refused

    uploaded = out.text("client.upload_file(")
    assert "status: COMPLETED" in uploaded and "threshold: 3.0" in uploaded
