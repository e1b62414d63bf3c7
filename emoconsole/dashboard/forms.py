"""The new-run form's rules, without Textual: what makes a launch request valid.

Checked here, before anything touches a host: the model is in the zoo, the
host is configured, a data path is given, and every override reads
``section.key=value``. Whether a key exists in the model's config is the
host's question (``remote.deploy.check_config`` resolves it with the code that
will train), and whether the data directory exists there too; the form shows
those answers under the same field names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

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


class FormError(Exception):
    """An answer about one field of the form (from the form or from the host)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


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
    models: Iterable[str],
    hosts: Iterable[str],
) -> tuple[NewRun | None, dict[str, str]]:
    """(request, {}) when every field is fine, else (None, {field: what is wrong})."""
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
        errors["data"] = "data: the data set directory (on the host) is required"
    good, bad = parse_overrides(overrides)
    if bad:
        errors["overrides"] = f"overrides: not section.key=value: {'; '.join(bad)}"
    if errors:
        return None, errors
    return NewRun(model, host, data, tuple(good)), {}
