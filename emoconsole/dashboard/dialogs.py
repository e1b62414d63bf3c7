"""Modal dialogs, each returning a typed value to the caller's callback:
a yes/no confirm (bool) and the new-run form ((host, run id) of the launched run, or None).

The form's blocking work (``remote.start.start_run``: the data uploaded or found on
the host, the code shipped, Python prepared, the config checked, the run started
and recorded) runs in a thread worker; an error about one field of the request
(``DeployError.field``) comes back under that field.
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.suggester import SuggestFromList
from textual.widgets import Button, Checkbox, Input, Label, Static, TextArea
from textual.worker import Worker

from emoconsole.dashboard.base import DashboardModal, worker_error_text
from emoconsole.dashboard.forms import FIELDS, NewRun, validate_new_run, zoo_names


class ConfirmDialog(DashboardModal[bool]):
    """Yes/no, returned as a bool to the caller's callback."""

    BINDINGS = [  # noqa: RUF012
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm"):
            yield Label(self.question)
            with Horizontal():
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class NewRunDialog(DashboardModal[tuple[str, str] | None]):
    """Model, host, data (a directory on the host, or a local folder to upload) and
    ``key=value`` overrides; returns (host, run id) of the launched run, or None when
    cancelled.

    Model and host are typed (with completion from the zoo and the hosts file)
    rather than picked, so what the form checks is what a user can get wrong."""

    BINDINGS = [  # noqa: RUF012
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "launch", "Launch"),
    ]

    def __init__(self, hosts: dict[str, Any] | None = None, *, default_host: str = "local") -> None:
        super().__init__()
        self.hosts_override = hosts
        self.default_host = default_host
        self.models = zoo_names()
        self.launching = False

    def host_names(self) -> list[str]:
        from remote.config import load_hosts

        return sorted(self.hosts_override or load_hosts())

    def compose(self) -> ComposeResult:
        with Vertical(id="new-run"):
            yield Label("New run", classes="section")
            yield Label("model (from the zoo)")
            yield Input(placeholder="hybrid-attention", id="model",
                        suggester=SuggestFromList(self.models))  # fmt: skip
            yield Static("", id="model-error", classes="field-error")
            yield Label("host")
            yield Input(self.default_host, id="host")
            yield Static("", id="host-error", classes="field-error")
            yield Label("data (a data set directory on the host, or a local folder to upload)")
            yield Input(placeholder="/data/ravdess", id="data")
            yield Checkbox("upload this local folder (only files that differ are sent)",
                           id="upload")  # fmt: skip
            yield Static("", id="data-error", classes="field-error")
            yield Label("config overrides, one section.key=value a line")
            yield TextArea(id="overrides", placeholder="train.epochs=5")
            yield Static("", id="overrides-error", classes="field-error")
            yield Static("", id="form-status")
            with Horizontal():
                yield Button("Launch (ctrl+s)", id="launch", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        try:
            hosts = self.host_names()
        except Exception as exc:  # a broken hosts file: the host field says so on launch
            self._show({"host": f"host: {exc}"})
            hosts = ["local"]
        self.query_one("#host", Input).suggester = SuggestFromList(hosts)
        self.query_one("#model", Input).focus()

    def values(self) -> dict[str, Any]:
        return {
            "model": self.query_one("#model", Input).value,
            "host": self.query_one("#host", Input).value,
            "data": self.query_one("#data", Input).value,
            "upload": self.query_one("#upload", Checkbox).value,
            "overrides": self.query_one("#overrides", TextArea).text,
        }

    def _show(self, errors: dict[str, str], status: str = "") -> None:
        for name in FIELDS:
            self.query_one(f"#{name}-error", Static).update(errors.get(name, ""))
        self.query_one("#form-status", Static).update(status)

    def _done(self, host: str, run_id: str) -> None:
        self.dismiss((host, run_id))

    def _failed(self, errors: dict[str, str], status: str = "") -> None:
        self.launching = False
        self.query_one("#launch", Button).disabled = False
        self._show(errors, status)

    @on(Button.Pressed, "#launch")
    @on(Input.Submitted)
    def action_launch(self) -> None:
        if self.launching:
            return
        try:
            hosts = self.host_names()
        except Exception as exc:
            self._show({"host": f"host: {exc}"})
            return
        request, errors = validate_new_run(**self.values(), models=self.models, hosts=hosts)
        if request is None:
            self._show(errors, "nothing launched: fix the fields above")
            return
        self.launching = True
        self.query_one("#launch", Button).disabled = True
        self._show({}, f"launching {request.model} on {request.host}...")
        self.launch_worker(request)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        if not self.launching:  # a launch under way finishes; its run shows in the table
            self.dismiss(None)

    @work(thread=True, exclusive=True, group="launch", name="launch run", exit_on_error=False)
    def launch_worker(self, request: NewRun) -> None:
        """``start_run``, which refuses a request before anything starts with the field
        it is about (a data directory missing, a config key the model lacks); any
        other failure is the host's, shown under the host field."""
        from remote.deploy import DeployError
        from remote.start import start_run

        def status(message: str) -> None:
            self.app.call_from_thread(self.query_one("#form-status", Static).update, message)

        try:
            launch = start_run(request.run_request(), status, hosts=self.hosts_override)
        except DeployError as exc:
            if exc.field is None:  # shipping, the interpreter, a run that died at once
                self.app.call_from_thread(self._failed, {"host": f"host: {exc}"}, "launch failed")
            elif exc.field in FIELDS:
                errors = {exc.field: f"{exc.field}: {exc}"}
                self.app.call_from_thread(self._failed, errors, "nothing launched")
            else:  # about a part of the request the form does not ask for
                self.app.call_from_thread(self._failed, {}, f"nothing launched: {exc}")
            return
        self.app.call_from_thread(self._done, request.host, launch.run_id)

    def worker_failed(self, worker: Worker[Any], error: BaseException) -> None:
        """Anything else (an unreachable host, an upload cut short): the form stays,
        with the launch button back, the notification naming the worker."""
        self._failed({}, f"failed: {worker_error_text(error)}")
