"""A process whose cluster goes away while models are loaded: one error, a quiet exit."""

import subprocess
import sys
import textwrap

import pytest
from cluster_support import worker_env
from dask_testlib import save_fault_model

pytestmark = pytest.mark.slow

MODELS = 20

PROCESS = textwrap.dedent(
    """
    import sys, time
    import alog
    import dask_testlib  # registers the fault module
    from caikit.core.modules import ModuleConfig
    from caikit_dask import DaskModelInitializer

    alog.configure(default_level="warning")
    connection = {"address": sys.argv[1], "timeout": "30s"}
    initializer = DaskModelInitializer(
        {"connection": connection, "health_check_period": "0.1s", "call_timeout": "5s"}, "lost"
    )
    models = [initializer.init(ModuleConfig.load(sys.argv[2])) for _ in range(int(sys.argv[3]))]
    assert all(models)
    print("loaded", flush=True)
    sys.stdin.readline()  # the test has killed the cluster
    # Twenty health-check periods of every model while the scheduler is gone (the client
    # notices at once: the scheduler's end of its connection is closed by the kill).
    time.sleep(2)
    print("exiting", flush=True)
    # exits holding the models, as a runtime stopped while its cluster is down would
    """
)


def test_a_lost_cluster_is_logged_once_and_exit_is_quiet(process_cluster, tmp_path):
    process_cluster.add_worker("a")
    path = save_fault_model(str(tmp_path / "fault"))
    process = subprocess.Popen(
        [sys.executable, "-c", PROCESS, process_cluster.address, path, str(MODELS)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=worker_env(),
    )
    try:
        assert process.stdout.readline().strip() == "loaded", process.stderr.read()[-3000:]
        process_cluster.kill_worker("a")
        process_cluster.kill_scheduler()
        stdout, stderr = process.communicate("go\n", timeout=120)
    finally:
        process.kill()
    assert "exiting" in stdout, stderr[-3000:]
    assert stderr.count("is unreachable") == 1, (stdout + stderr)[-5000:]
    assert "Exception ignored" not in stderr, stderr[-5000:]
    assert "Traceback" not in stderr, stderr[-5000:]
