"""The ``/caikit-dask`` page in a real browser: Debian's headless Chromium, driven by
selenium through chromedriver (``.ci/run`` installs both)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests
from caikit.core.modules import ModuleConfig
from dask.utils import format_bytes
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from caikit_dask import DaskModelInitializer
from caikit_dask.example import TextClassifier

pytestmark = pytest.mark.slow

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# As this machine runs it: no sandbox (root), no GPU, nothing fetched from outside.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1300,1100",
)


@pytest.fixture
def browser(tmp_path):
    for program in (CHROMIUM, CHROMEDRIVER):
        assert os.path.exists(program), (
            f"{program} is missing: apt-get install chromium chromium-driver (see .ci/run)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _cell_texts(driver, section: str) -> list[list[str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, f"#{section} tr")
    return [[cell.text for cell in row.find_elements(By.TAG_NAME, "td")] for row in rows[1:]]


def test_the_page_shows_models_workers_and_trainings_and_refreshes_live(
    browser, local_cluster, served, tmp_path
):
    port = local_cluster.scheduler_info["services"]["dashboard"]
    browser.get(f"http://127.0.0.1:{port}/caikit-dask")
    wait = WebDriverWait(browser, 20)
    wait.until(lambda d: d.find_element(By.ID, "scheduler").text == local_cluster.scheduler_address)
    models = _cell_texts(browser, "models")
    names = {row[0] for row in models if row[0]}
    assert set(served) <= names
    for name, proxy in served.items():
        start = next(i for i, row in enumerate(models) if row[0] == name)
        shown = [row[2] for row in models[start : start + len(proxy.replicas)]]
        assert sorted(shown) == sorted(r["worker"] for r in proxy.replicas)
        assert {row[3] for row in models[start : start + len(proxy.replicas)]} == {"loaded"}
    workers = _cell_texts(browser, "workers")
    assert sorted(row[0] for row in workers) == sorted(local_cluster.scheduler_info["workers"])
    assert all(" of " in row[4] for row in workers)  # booked against the model memory
    # The same units as the command line (dask's format_bytes), not decimal ones.
    status = requests.get(f"http://127.0.0.1:{port}/caikit-dask/status.json", timeout=10).json()
    model_memory = {w["worker"]: w["model_memory"] for w in status["workers"]}
    for row in workers:
        assert row[4].endswith(" of " + format_bytes(model_memory[row[0]])), row
    statuses = [row[0] for row in _cell_texts(browser, "trainings")]
    assert statuses == ["QUEUED", "RUNNING", "COMPLETED", "ERRORED", "CANCELED"]

    path = str(tmp_path / "late-model")
    TextClassifier.train(epochs=2).save(path)
    initializer = DaskModelInitializer(
        {"connection": {"address": local_cluster.scheduler_address}}, "browser"
    )
    late = initializer.init(ModuleConfig.load(path))
    try:
        wait.until(lambda d: "late-model" in d.find_element(By.ID, "models").text)
    finally:
        late.close()
    wait.until(lambda d: "late-model" not in d.find_element(By.ID, "models").text)
    screenshot = tmp_path / "caikit-dask-page.png"
    assert browser.save_screenshot(str(screenshot))
    assert screenshot.stat().st_size > 10_000
    keep = os.environ.get("CAIKIT_DASK_SCREENSHOT")
    if keep:
        shutil.copy(screenshot, Path(keep))
