"""Fixtures: one throwaway JupyterLab and one headless Chromium per test session."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from arkor_nb.sdk.local_server import live_server
from tests.browser.lab import (
    LabPage,
    LabServer,
    e2e_home,
    launch_chromium,
    stop_local_server_started_since,
)

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"


@pytest.fixture(scope="package")
def lab_root() -> Path:
    """The directory JupyterLab serves: notebooks the tests write go here."""
    return Path(tempfile.mkdtemp(prefix="arkor-nb-lab-root-"))


@pytest.fixture(scope="package")
def backend_home() -> Path:
    """ARKOR_NB_HOME of the kernels' local backend (see ``e2e_home``)."""
    return e2e_home()


@pytest.fixture(scope="package")
def lab(lab_root: Path, backend_home: Path) -> Iterator[LabServer]:
    """JupyterLab serving ``lab_root``; kernels use ``backend_home`` for the local backend.

    While Lab starts, the built-in tiny model is built into that home (a cache
    the first training run would otherwise fill, ~20-40 s on 2 busy cores).
    The kernel's local server runs from ``lab_root``, so the repo's data/
    folder is listed in ARKOR_NB_DATA_ROOTS, as for a checkout outside $HOME.
    """
    warm = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from arkor_nb.core.home import home_dir\n"
            "from arkor_nb.local.training.models import TINY_MODEL_ID, resolve_model\n"
            "resolve_model(TINY_MODEL_ID, home_dir())",
        ],
        cwd=REPO,
        env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "ARKOR_NB_HOME": str(backend_home)},
    )
    before = live_server(backend_home)
    scratch = Path(tempfile.mkdtemp(prefix="arkor-nb-lab-scratch-"))
    server = LabServer(
        lab_root,
        scratch,
        env={
            "ARKOR_NB_HOME": str(backend_home),
            "ARKOR_NB_DATA_ROOTS": str(REPO / "data"),
            "OMP_WAIT_POLICY": "PASSIVE",
        },
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()
        warm.wait(timeout=300)
        stop_local_server_started_since(before, backend_home)


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def lab_page(lab: LabServer, browser: Browser, request: pytest.FixtureRequest) -> Iterator[LabPage]:
    """A fresh browser context per test; a screenshot is kept if the test fails."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page: Page = context.new_page()
    page.set_default_timeout(60_000)
    wrapped = LabPage(page, lab)
    try:
        yield wrapped
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            try:
                wrapped.screenshot(ARTIFACTS / f"FAILED-{request.node.name}.png")
            except Exception:  # noqa: BLE001 - never mask the real failure
                pass
        context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report
