"""Fixtures for the deploy tests (helpers live in deploy_support)."""

import pytest
from deploy_support import load_manifests, load_runtime_config


@pytest.fixture
def manifests() -> list[dict]:
    return load_manifests()


@pytest.fixture
def runtime_config() -> dict:
    return load_runtime_config()
