"""Modal dialogs, each returning a typed value to the caller's callback:
a yes/no confirm (bool) and the new-run form ((host, run id) of the launched run, or None).

The form's blocking work (a data check on the host, then ``remote.deploy.deploy``,
which ships, prepares, checks the config and starts the run) runs in a thread
worker; its answers come back as errors under the field they are about.
"""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Static, TextArea

from emoconsole.dashboard.forms import FIELDS, FormError, NewRun, validate_new_run, zoo_names


class ConfirmDialog(ModalScreen[bool]):
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


class NewRunDialog(ModalScreen[tuple[str, str] | None]):
    """Model, host, data path and ``key=value`` overrides; returns (host, run id) of
    the launched run, or None when cancelled.

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
            yield Label("data (a data set directory on the host)")
            yield Input(placeholder="/data/ravdess", id="data")
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

    def values(self) -> dict[str, str]:
        return {
            "model": self.query_one("#model", Input).value,
            "host": self.query_one("#host", Input).value,
            "data": self.query_one("#data", Input).value,
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
        """The host's answers: its data directory, then deploy (which checks the config
        before anything starts). A known failure goes back to the form, under its field."""
        from remote import ledger
        from remote.deploy import DeployError, deploy
        from remote.hosts import get_host

        def status(message: str) -> None:
            self.app.call_from_thread(self.query_one("#form-status", Static).update, message)

        try:
            host = get_host(request.host, self.hosts_override)
            try:
                if not host.run(["test", "-d", request.data], timeout=60).ok:
                    raise FormError("data", f"data: no directory {request.data} on {host.name}")
                launch = deploy(
                    host, request.model, data=request.data, overrides=list(request.overrides),
                    progress=status,
                )  # fmt: skip
            finally:
                host.close()
        except FormError as exc:
            self.app.call_from_thread(self._failed, {exc.field: exc.message}, "nothing launched")
            return
        except DeployError as exc:
            text = str(exc)
            # check_config's answers start with the model's name and name the key; the
            # rest (shipping, the interpreter, a run that died at once) start with the host's.
            field = "overrides" if text.startswith(f"{request.model}: ") else "host"
            outcome = "nothing launched" if field == "overrides" else "launch failed"
            self.app.call_from_thread(self._failed, {field: f"{field}: {text}"}, outcome)
            return
        except Exception as exc:
            self.app.call_from_thread(self._failed, {}, f"failed: {type(exc).__name__}: {exc}")
            raise
        ledger.record(launch.run_id, request.host, launch.run_dir, request.model, pid=launch.pid)
        self.app.call_from_thread(self._done, request.host, launch.run_id)
