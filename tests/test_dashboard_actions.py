"""The dashboard's actions, driven by Pilot on the local host against real run directories:
new run (form, validation, a real launch, a local folder uploaded), stop + resume,
download with a progress bar, compare two runs, TensorBoard, EC2 cost figures, and a run
view opened before its run.

Nothing of ours is mocked: launches go through remote.start, downloads through
remote.download, TensorBoard is the real server answering HTTP.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import urllib.request
from pathlib import Path

import pytest
from textual.widgets import Checkbox, DataTable, Input, ProgressBar, Static, TextArea

from emoconsole.dashboard.app import Dashboard
from emoconsole.dashboard.compare import CompareScreen
from emoconsole.dashboard.cost import cost_text, run_cost
from emoconsole.dashboard.dialogs import NewRunDialog
from emoconsole.dashboard.forms import validate_new_run, zoo_names
from emoconsole.dashboard.run_view import RunScreen
from emoconsole.dashboard.runs_table import RunsScreen
from emoconsole.dashboard.transfers import DownloadDialog, TensorBoardDialog
from remote import ledger
from remote.config import LOCAL, HostConfig
from remote.tensorboard import local_executable
from tests.conftest import SMALL_MODEL
from tests.test_dashboard import FAST, RUN_ID, make_run, sync, table_rows, wait_for

OTHER_ID = "20260102-090000-hybrid-attention-ef56"


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """The local host lists ./runs; no user hosts file; the deploy ledger kept here."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EMOCONSOLE_CONFIG", str(tmp_path / "no-hosts.toml"))
    monkeypatch.setenv("EMOCONSOLE_STATE", str(tmp_path / "state"))
    return tmp_path


def shown(app) -> set[str]:
    """The footer's key descriptions on the current screen."""
    return {b.binding.description for b in app.screen.active_bindings.values() if b.binding.show}


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def launched_runs(runs: Path) -> list[str]:
    return (
        sorted(p.name for p in runs.iterdir() if not p.name.startswith("."))
        if runs.exists()
        else []
    )


async def fill_form(pilot, dialog, model: str, host: str, data: str, overrides: str) -> None:
    for name, value in (("model", model), ("host", host), ("data", data)):
        dialog.query_one(f"#{name}", Input).value = value
    dialog.query_one("#overrides", TextArea).text = overrides
    await pilot.pause()


# -- pure rules -------------------------------------------------------------------------------


def test_form_rules_name_each_bad_field():
    request, errors = validate_new_run(
        "hybrid-atention", "gpu9", " ", "train.epochs=2\nepochs 5\n# a comment\n=3",
        models=zoo_names(), hosts=["local"],
    )  # fmt: skip
    assert request is None
    assert set(errors) == {"model", "host", "data", "overrides"}
    assert "unknown model 'hybrid-atention'" in errors["model"]
    assert "unknown host 'gpu9'" in errors["host"] and "local" in errors["host"]
    assert errors["overrides"].endswith("epochs 5; =3")  # the good line and comment pass
    request, errors = validate_new_run(
        "hybrid-attention", "local", "/data", "train.epochs=2\n", models=zoo_names(),
        hosts=["local"],
    )  # fmt: skip
    assert errors == {} and request is not None and request.overrides == ("train.epochs=2",)


def test_cost_arithmetic():
    cost = run_cost(0.526, uptime_s=2 * 3600, remaining_s=1800)
    assert cost.so_far == pytest.approx(1.052)
    assert cost.to_finish == pytest.approx(0.263)
    assert cost.at_end == pytest.approx(1.315)
    assert cost_text(cost) == (
        "cost ~$0.526/h, $1.05 so far, $0.26 to finish (30m00s left), ~$1.31 at the end"
    )
    unknown = run_cost(3.06, uptime_s=-5, remaining_s=None)  # clock skew; no ETA yet
    assert unknown.so_far == 0 and unknown.at_end is None
    assert cost_text(unknown).endswith("to finish: no ETA yet")


# -- new run, stop, resume ----------------------------------------------------------------------


@sync
async def test_new_run_form_shows_errors_and_launches_nothing(workdir):
    (workdir / "data").mkdir()
    app = Dashboard(**FAST)
    async with app.run_test(size=(140, 45)) as pilot:
        assert {"New run", "Mark", "Compare marked"} <= shown(app)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewRunDialog), what="the form")
        dialog = app.screen
        await fill_form(pilot, dialog, "hybrid-atention", "gpu9", "", "train.epochs=1\nepochs 5")
        await pilot.click("#launch")  # the mouse submits too
        for name, says in (("model", "unknown model 'hybrid-atention'"),
                           ("host", "unknown host 'gpu9'"), ("data", "data: "),
                           ("overrides", "not section.key=value: epochs 5")):  # fmt: skip
            assert says in text_of(dialog, f"#{name}-error"), name
        # A data path that is not on the host: the host says so, under the data field.
        await fill_form(pilot, dialog, "hybrid-attention", "local", str(workdir / "nope"), "")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "no directory" in text_of(dialog, "#data-error"),
                       what="the data field's error")  # fmt: skip
        # Well-formed, but a key the model's config lacks: deploy's config check refuses it.
        await fill_form(pilot, dialog, "hybrid-attention", "local", str(workdir / "data"),
                        "train.epochs=1\ntrain.nope=1")  # fmt: skip
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: "train.nope" in text_of(dialog, "#overrides-error"),
                       what="the config key's error")  # fmt: skip
        assert text_of(dialog, "#data-error") == "" and "nothing launched" in text_of(
            dialog, "#form-status"
        )
        assert isinstance(app.screen, NewRunDialog)
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
    assert launched_runs(workdir / "runs") == []


@sync
async def test_new_run_launches_then_stop_and_resume(workdir, small_corpus, feature_cache):
    overrides = "\n".join([*SMALL_MODEL, "train.epochs=3", f"data.cache_dir={feature_cache}"])
    app = Dashboard(**FAST)
    first_pid = resumed_pid = None
    try:
        async with app.run_test(size=(160, 45), notifications=True) as pilot:
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, NewRunDialog), what="form")
            await fill_form(pilot, app.screen, "hybrid-attention", "local", str(small_corpus),
                            overrides)  # fmt: skip
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), timeout=90,
                           what="the launch")  # fmt: skip
            (run_id,) = launched_runs(workdir / "runs")
            assert (workdir / "runs" / run_id / "run.json").is_file()
            table = app.screen.query_one("#runs", DataTable)
            await wait_for(pilot, lambda: any(r[0] == run_id for r in table_rows(table)),
                           what="the new run's row")  # fmt: skip
            assert app.screen.selected_row().id == run_id  # the cursor is on it
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
            view = app.screen
            assert {"Resume", "Download", "TensorBoard", "Stop run"} <= shown(app)
            await pilot.press("r")  # running: refused, nothing starts
            await pilot.pause(0.2)
            assert "can be resumed" in list(app._notifications)[-1].message
            first_pid = json.loads((workdir / "runs" / run_id / "run.json").read_text())["pid"]
            # A crash (the stop key's graceful path waits for a step boundary, and the
            # existing stop test covers it): the view says crashed, and r resumes it.
            os.killpg(first_pid, signal.SIGKILL)
            await wait_for(pilot, lambda: view.state.status == "crashed", what="the crash")
            await pilot.press("r")
            await wait_for(pilot, lambda: view.state.status.startswith("resuming"), timeout=60,
                           what=f"the resume (status {view.state.status})")  # fmt: skip
            manifest = json.loads((workdir / "runs" / run_id / "run.json").read_text())
            (entry,) = manifest["resumes"]
            assert entry["pid"] != first_pid and entry["argv"][-1].endswith(run_id)
            os.kill(entry["pid"], 0)  # alive
            assert f"pid {entry['pid']}" in text_of(view, "#run-header")
            assert "crashed" not in text_of(view, "#run-warnings")
            resumed_pid = entry["pid"]
    finally:
        for pid in (first_pid, resumed_pid):
            with contextlib.suppress(ProcessLookupError, TypeError):
                os.killpg(pid, signal.SIGKILL)  # its own session: workers go with it


@sync
async def test_new_run_uploads_a_local_folder_to_a_host_with_a_workdir(
    workdir, small_corpus, feature_cache
):
    """Ticked "upload": a missing local folder is the data field's error at once; a
    key the model lacks comes back from the host on the overrides field (the typed
    DeployError.field); then the run starts from the host's copy of the folder."""
    box = workdir / "box"
    hosts = {"local": LOCAL, "box": HostConfig(name="box", kind="local", workdir=str(box))}
    overrides = "\n".join([*SMALL_MODEL, "train.epochs=1", f"data.cache_dir={feature_cache}"])
    app = Dashboard(hosts, **FAST)
    pid = None
    try:
        async with app.run_test(size=(160, 45)) as pilot:
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, NewRunDialog), what="form")
            dialog = app.screen
            dialog.query_one("#upload", Checkbox).value = True
            await fill_form(pilot, dialog, "hybrid-attention", "box", str(workdir / "nope"),
                            overrides)  # fmt: skip
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: "no local folder" in text_of(dialog, "#data-error"),
                           what="the data field's error")  # fmt: skip
            assert not (box / "data").exists() and not (box / "code").exists()  # nothing sent
            await fill_form(pilot, dialog, "hybrid-attention", "box", str(small_corpus),
                            overrides + "\ntrain.nope=1")  # fmt: skip
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: "train.nope" in text_of(dialog, "#overrides-error"),
                           timeout=120, what="the config key's error")  # fmt: skip
            assert "nothing launched" in text_of(dialog, "#form-status")
            assert launched_runs(box / "runs") == []
            await fill_form(pilot, dialog, "hybrid-attention", "box", str(small_corpus),
                            overrides)  # fmt: skip
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), timeout=120,
                           what="the launch")  # fmt: skip
        (run_id,) = launched_runs(box / "runs")
        pid = json.loads((box / "runs" / run_id / "run.json").read_text())["pid"]
        copy = box / "data" / small_corpus.name
        sent = sorted(p.relative_to(small_corpus) for p in small_corpus.rglob("*") if p.is_file())
        assert sent and all(sha256(copy / p) == sha256(small_corpus / p) for p in sent)
        (row,) = ledger.entries()
        assert (row["run_id"], row["host"], row["pid"]) == (run_id, "box", pid)
    finally:
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.killpg(pid, signal.SIGKILL)


# -- download, compare, TensorBoard, cost, a run that is not there yet ---------------------------


@sync
async def test_download_shows_progress_and_lands_checked(workdir):
    events = make_run(workdir / "runs", RUN_ID, os.getpid())
    events.close()
    ckpt = workdir / "runs" / RUN_ID / "checkpoints" / "last.pt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(os.urandom(3 << 20))
    app = Dashboard(open_run=("local", RUN_ID), **FAST)
    async with app.run_test(size=(140, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DownloadDialog), what="dialog")
        dialog = app.screen
        await wait_for(pilot, lambda: dialog.report is not None, what="the download")
        bar = dialog.query_one("#download-bar", ProgressBar)
        assert bar.total == bar.progress == sum(f.size for f in dialog.report.files)
        assert "every file SHA-256 checked" in text_of(dialog, "#download-result")
        await pilot.click("#close")
        assert isinstance(app.screen, RunScreen)
    landed = workdir / "downloads" / RUN_ID
    assert sha256(landed / "checkpoints" / "last.pt") == sha256(ckpt)
    assert sha256(landed / "events.jsonl") == sha256(workdir / "runs" / RUN_ID / "events.jsonl")


@sync
async def test_compare_two_marked_runs(workdir):
    for run_id, epochs in ((RUN_ID, 3), (OTHER_ID, 2)):
        make_run(workdir / "runs", run_id, os.getpid(), epochs_done=epochs).close()
    app = Dashboard(**FAST)
    async with app.run_test(size=(160, 45)) as pilot:
        table = app.screen.query_one("#runs", DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="both runs")
        await pilot.press("c")  # nothing marked: refused
        await pilot.press("space", "down", "space")
        assert [r[0][:2] for r in table_rows(table)] == ["✓ ", "✓ "]
        await pilot.press("c")
        await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen), what="compare")
        screen = app.screen
        compare = screen.query_one("#compare-table", DataTable)
        await wait_for(pilot, lambda: compare.row_count == 2, what="both runs read")
        title = text_of(screen, "#compare-title")
        assert OTHER_ID in title and RUN_ID in title
        rows = {r[0]: r for r in table_rows(compare)}
        assert rows[RUN_ID][2] == "3" and rows[OTHER_ID][2] == "2"  # val epochs of each
        assert rows[RUN_ID][3] == "0.7000"  # best macro F1: epoch 3
        assert {k[1]: len(v) for k, v in screen.histories.items()} == {RUN_ID: 3, OTHER_ID: 2}
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        assert {"New run", "Mark run", "Compare marked runs"} <= titles


@pytest.mark.skipif(local_executable() is None, reason="tensorboard is not installed")
@sync
async def test_tensorboard_and_cost_in_the_run_view(workdir):
    make_run(workdir / "runs", RUN_ID, os.getpid()).close()
    app = Dashboard(open_run=("local", RUN_ID), **FAST)
    async with app.run_test(size=(160, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
        view = app.screen
        await wait_for(pilot, lambda: bool(view.state.run_dir), what="the run directory")
        titles = {c.title for c in app.get_system_commands(view)}
        assert {"Resume run", "Download run", "TensorBoard"} <= titles
        # Cost: what the EC2 price worker hands over, counted on with the ETA.
        view.set_price(0.526, 2 * 3600)
        assert "cost ~$0.526/h, $1.05 so far" in text_of(view, "#run-header")
        assert view.cost is not None and view.cost.usd_per_hour == 0.526
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, TensorBoardDialog), what="dialog")
        dialog = app.screen
        await wait_for(pilot, lambda: dialog.url is not None, timeout=60, what="TensorBoard up")
        assert dialog.url in text_of(dialog, "#tb-url")
        with urllib.request.urlopen(dialog.url, timeout=10) as answer:
            assert answer.status == 200
        await pilot.press("escape")  # closes the dialog and stops TensorBoard
        assert isinstance(app.screen, RunScreen)
    with pytest.raises(OSError):
        urllib.request.urlopen(dialog.url, timeout=2)


@sync
async def test_run_view_waits_for_a_run_that_is_not_there_yet(workdir):
    app = Dashboard(open_run=("local", RUN_ID), **FAST)
    async with app.run_test(size=(140, 40), notifications=True) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunScreen), what="run view")
        view = app.screen
        await wait_for(pilot, lambda: "waiting for run" in text_of(view, "#run-header"),
                       what="the waiting header")  # fmt: skip
        make_run(workdir / "runs", RUN_ID, os.getpid()).close()
        epochs = view.query_one("#epochs", DataTable)
        await wait_for(pilot, lambda: epochs.row_count == 3, what="the run attached")
        assert "waiting for run" not in text_of(view, "#run-header")
        assert not app._notifications
