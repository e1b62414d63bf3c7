"""A failing worker on any screen or dialog of the dashboard: a notification naming the
worker, and in a dialog the error in its body, in place of its "starting..." text.

The failures are real: an SSH host on a loopback port where nothing listens (refused
at once), and a run directory deleted before its download starts.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import shutil
import socket
from pathlib import Path

import pytest
from textual.screen import Screen
from textual.widgets import Button, DataTable, Input, ProgressBar, Static

import emoconsole.dashboard
from emoconsole.dashboard.app import Dashboard
from emoconsole.dashboard.base import ReportsWorkerErrors
from emoconsole.dashboard.dialogs import NewRunDialog
from emoconsole.dashboard.runs_table import RunsScreen
from emoconsole.dashboard.transfers import DownloadDialog, TensorBoardDialog
from remote.config import LOCAL, HostConfig
from tests.test_dashboard import FAST, RUN_ID, make_run, sync, wait_for

# Screens that cannot report a failed worker yet: none left.
NOT_YET: set[str] = set()


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The local host lists ./runs; no user hosts file."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "no-hosts.toml"))
    return tmp_path


def hosts_with_one_down() -> dict[str, HostConfig]:
    with socket.socket() as s:  # a port where nothing listens: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {
        "local": LOCAL,
        "gpu-down": HostConfig(name="gpu-down", kind="ssh", host="127.0.0.1", port=port),
    }


def text_of(screen: Screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def messages(app: Dashboard) -> list[str]:
    return [n.message for n in app._notifications]


def test_every_screen_and_dialog_reports_failed_workers():
    screens = set()
    for module in pkgutil.iter_modules(emoconsole.dashboard.__path__):
        loaded = importlib.import_module(f"emoconsole.dashboard.{module.name}")
        for _, cls in inspect.getmembers(loaded, inspect.isclass):
            if issubclass(cls, Screen) and cls.__module__ == loaded.__name__:
                screens.add(cls)
    assert {DownloadDialog, TensorBoardDialog, RunsScreen} <= screens
    missing = {cls.__name__ for cls in screens if not issubclass(cls, ReportsWorkerErrors)}
    assert missing <= NOT_YET, f"derive from DashboardScreen or DashboardModal: {missing}"


@sync
async def test_download_from_an_unreachable_host_fails_in_the_dialog(workdir):
    hosts = hosts_with_one_down()
    app = Dashboard(hosts, **FAST)
    async with app.run_test(size=(140, 40), notifications=True) as pilot:
        await app.push_screen(DownloadDialog("gpu-down", RUN_ID, hosts=hosts))
        await wait_for(pilot, lambda: isinstance(app.screen, DownloadDialog), what="dialog")
        dialog = app.screen
        await wait_for(pilot, lambda: "failed" in text_of(dialog, "#download-file"),
                       what="the error in the dialog")  # fmt: skip
        said = text_of(dialog, "#download-file")
        assert said.startswith("download failed: TransportError: gpu-down: connecting to ")
        assert "Connection refused" in said
        assert not dialog.query_one("#download-bar", ProgressBar).display
        assert [m for m in messages(app) if m.startswith("download run: ")] == [
            "download run: " + said.removeprefix("download failed: ")
        ]
        await pilot.press("escape")  # still closable
        assert isinstance(app.screen, RunsScreen)


@sync
async def test_download_of_a_deleted_run_fails_in_the_dialog(workdir):
    make_run(workdir / "runs", RUN_ID, os.getpid()).close()
    app = Dashboard(**FAST)
    async with app.run_test(size=(140, 40), notifications=True) as pilot:
        table = app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 1, what="the run's row")
        shutil.rmtree(workdir / "runs" / RUN_ID)  # gone between the listing and the download
        await app.push_screen(DownloadDialog("local", RUN_ID))
        await wait_for(pilot, lambda: isinstance(app.screen, DownloadDialog), what="dialog")
        dialog = app.screen
        await wait_for(pilot, lambda: "failed" in text_of(dialog, "#download-file"),
                       what="the error in the dialog")  # fmt: skip
        missing = f"no run directory at {workdir / 'runs' / RUN_ID}"
        assert text_of(dialog, "#download-file") == f"download failed: DownloadError: {missing}"
        assert f"download run: DownloadError: {missing}" in messages(app)
        await pilot.click("#close")
        assert isinstance(app.screen, RunsScreen)


@sync
async def test_tensorboard_on_an_unreachable_host_fails_in_the_dialog(workdir):
    hosts = hosts_with_one_down()
    app = Dashboard(hosts, **FAST)
    async with app.run_test(size=(140, 40), notifications=True) as pilot:
        await app.push_screen(TensorBoardDialog("gpu-down", f"runs/{RUN_ID}", hosts=hosts))
        await wait_for(pilot, lambda: isinstance(app.screen, TensorBoardDialog), what="dialog")
        dialog = app.screen
        await wait_for(pilot, lambda: "starting" not in text_of(dialog, "#tb-url"),
                       what="the error in the dialog")  # fmt: skip
        said = text_of(dialog, "#tb-url")
        assert said.startswith("TensorBoard did not start: TransportError: gpu-down: ")
        assert any(m.startswith("tensorboard: TransportError: gpu-down: ") for m in messages(app))
        assert dialog.board is None and dialog.url is None
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


@sync
async def test_new_run_on_an_unreachable_host_fails_in_the_form(workdir):
    hosts = hosts_with_one_down()
    app = Dashboard(hosts, **FAST)
    async with app.run_test(size=(140, 45), notifications=True) as pilot:
        await app.push_screen(NewRunDialog(hosts))
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunDialog), what="the form")
        dialog = app.screen
        for name, value in (("model", "hybrid-attention"), ("host", "gpu-down"), ("data", "/d")):
            dialog.query_one(f"#{name}", Input).value = value
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "failed" in text_of(dialog, "#form-status"),
                       what="the error in the form")  # fmt: skip
        said = text_of(dialog, "#form-status")
        assert said.startswith("failed: TransportError: gpu-down: connecting to ")
        assert "launch run: " + said.removeprefix("failed: ") in messages(app)
        assert not dialog.query_one("#launch", Button).disabled  # free to try another host
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
