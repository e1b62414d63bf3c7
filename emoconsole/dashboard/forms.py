"""The new-run form's rules, without Textual: what makes a launch request valid.

Checked here, before anything touches a host: the model is in the zoo, the
host is configured, a data path is given (an existing local folder when it is
to be uploaded), and every override reads ``section.key=value``. Whether a key
exists in the model's config is the host's question (``remote.deploy.check_config``
resolves it with the code that will train), and whether a data directory on the
host exists there too; ``remote.start`` raises those answers with the field they
are about, and the form shows them under it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from remote.start import RunRequest

FIELDS = ("model", "host", "data", "overrides")
# section.key[.more]=value: every config key lives in a section (model., train., data.).
_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)+=")


@dataclass(frozen=True)
class NewRun:
    """A launch request that passed the form's checks."""

    model: str
    host: str
    data: str
    overrides: tuple[str, ...] = ()
    upload: bool = False  # data is a folder on this machine, uploaded to the host

    def run_request(self) -> RunRequest:
        """What :func:`remote.start.start_run` takes."""
        from remote.start import RunRequest

        return RunRequest(
            model=self.model,
            host=self.host,
            local_data=Path(self.data).expanduser() if self.upload else None,
            host_data=None if self.upload else self.data,
            overrides=self.overrides,
        )


def zoo_names() -> list[str]:
    """Model names without importing torch: the zoo's lazy name -> module map."""
    from trainers.models import ZOO

    return sorted(ZOO)


def parse_overrides(text: str) -> tuple[list[str], list[str]]:
    """(overrides, malformed lines); blank lines and ``#`` comments are skipped."""
    good, bad = [], []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        (good if _OVERRIDE.match(line) else bad).append(line)
    return good, bad


def validate_new_run(
    model: str,
    host: str,
    data: str,
    overrides: str,
    *,
    upload: bool = False,
    models: Iterable[str],
    hosts: Iterable[str],
) -> tuple[NewRun | None, dict[str, str]]:
    """(request, {}) when every field is fine, else (None, {field: what is wrong}).

    With ``upload`` the data is a folder on this machine, so it is looked for here."""
    models, hosts = sorted(models), sorted(hosts)
    model, host, data = model.strip(), host.strip(), data.strip()
    errors: dict[str, str] = {}
    if not model:
        errors["model"] = "model: pick one from the zoo"
    elif model not in models:
        errors["model"] = f"model: unknown model {model!r} (known: {', '.join(models)})"
    if not host:
        errors["host"] = "host: pick a configured host"
    elif host not in hosts:
        errors["host"] = f"host: unknown host {host!r} (known: {', '.join(hosts)})"
    if not data:
        where = "a local folder to upload" if upload else "a directory on the host"
        errors["data"] = f"data: the data set is required ({where})"
    elif upload and not Path(data).expanduser().is_dir():
        errors["data"] = f"data: no local folder {data} to upload"
    good, bad = parse_overrides(overrides)
    if bad:
        errors["overrides"] = f"overrides: not section.key=value: {'; '.join(bad)}"
    if errors:
        return None, errors
    return NewRun(model, host, data, tuple(good), upload), {}
