"""Which trackers a config turns on, and whether their packages import: stdlib only.

``TrackConfig.validate`` calls these, so this module must not import
``trainers.config`` (nor anything that does): the config would import itself
back through the sinks.
"""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

# The extra of pyproject.toml that installs each tracker's package.
EXTRAS = {"wandb": "wandb", "mlflow": "mlflow"}
# The config key that turns each tracker on, and how the message names the setting.
KEYS = {
    "wandb": ("track.wandb", "track.wandb=true"),
    "mlflow": ("track.mlflow_uri", "track.mlflow_uri"),
}


def enabled(track: Any) -> list[str]:
    """The trackers ``track`` (a TrackConfig) turns on, by package name."""
    names = []
    if track.wandb:
        names.append("wandb")
    if track.mlflow_uri:
        names.append("mlflow")
    return names


def missing_package(track: Any) -> tuple[str, str] | None:
    """(config key, message) for the first enabled tracker whose package cannot be
    imported, or None. An import, not a find_spec: a broken install must fail here too,
    before the run exists, rather than as a warning once it runs."""
    for name in enabled(track):
        try:
            importlib.import_module(name)
        except ImportError as exc:
            key, setting = KEYS[name]
            return key, (
                f"{setting} needs the {name} package: pip install 'emoconsole[{EXTRAS[name]}]' "
                f"(importing it failed: {exc}); or turn the tracker off"
            )
    return None


def uri_problem(uri: str) -> str | None:
    """Why ``uri`` cannot be a tracking URI setting, or None. Credentials in it would be
    saved with the config in run.json (and logged as a parameter), so they are refused."""
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.username or parts.password:
        return (
            "holds credentials (user:password@), which would be written to run.json: give the "
            "URI without them and set MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD or "
            "MLFLOW_TRACKING_TOKEN in the environment instead"
        )
    return None


def public_uri(uri: str) -> str:
    """``uri`` without user info, query or fragment: what run.json may hold."""
    parts = urlsplit(uri)
    if not parts.netloc:
        return uri.split("?", 1)[0]
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
