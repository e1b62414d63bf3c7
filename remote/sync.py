"""Upload a local directory (a data set) to a host, sending only what differs.

Both sides are listed with sizes and SHA-256 (:mod:`remote.onhost.manifest`, on the
host where the bytes are), so a re-deploy of the same data sends nothing and
a changed or half-sent file is sent again. The bytes travel as one tar stream
through the OpenSSH client with the console's own host-key settings
(:mod:`remote.openssh`) when ``ssh`` is installed, else file
by file over SFTP; afterwards the host re-hashes what was sent, so a transfer
cut short is detected rather than trusted.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from remote.errors import RemoteError
from remote.host import Host
from remote.layout import python_module
from remote.local import LocalHost
from remote.onhost.manifest import manifest
from remote.openssh import TARGET_ALIAS, openssh_config


class UploadError(RemoteError):
    """The host's copy does not match after an upload."""


@dataclass
class UploadReport:
    remote: str
    sent: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_sent: int = 0


def remote_listing(host: Host, remote: str) -> dict[str, tuple[int, str]]:
    """{relative path: (size, sha256)} of the host's directory; empty when it is missing."""
    result = host.run(python_module(host, "remote.manifest", [remote]), timeout=3600)
    if not result.ok:
        if "no run directory" in result.stderr:
            return {}
        raise UploadError(f"{host.name}: listing {remote} failed:\n{result.tail()}")
    doc = json.loads(result.stdout.strip().splitlines()[-1])
    return {f["path"]: (f["size"], f["sha256"]) for f in doc["files"]}


def upload_dir(
    host: Host,
    local: Path,
    remote: str,
    *,
    progress: Callable[[str], None] | None = None,
    method: str = "auto",
) -> UploadReport:
    """Make ``remote`` on ``host`` hold exactly ``local``'s files (extra remote files stay)."""
    if not local.is_dir():
        raise UploadError(f"{local}: no such directory")
    ours = {f["path"]: (f["size"], f["sha256"]) for f in manifest(local)["files"]}
    theirs = remote_listing(host, remote)
    report = UploadReport(remote=remote)
    for path, sig in ours.items():
        (report.skipped if theirs.get(path) == sig else report.sent).append(path)
    report.bytes_sent = sum(ours[p][0] for p in report.sent)
    if progress:
        progress(
            f"data: {len(report.sent)} file(s) to send ({report.bytes_sent / 2**20:.1f} MiB), "
            f"{len(report.skipped)} already on {host.name}"
        )
    if not report.sent:
        return report
    if method == "auto":
        method = "tar" if not isinstance(host, LocalHost) and shutil.which("ssh") else "files"
    if method == "tar":
        _send_tar(host, local, remote, report.sent)
    else:
        _send_files(host, local, remote, report.sent)
    after = remote_listing(host, remote)
    bad = [p for p in report.sent if after.get(p) != ours[p]]
    if bad:
        raise UploadError(
            f"{host.name}: {len(bad)} file(s) differ after upload (e.g. {bad[0]}); "
            "run the deploy again to resend them"
        )
    return report


def _send_tar(host: Host, local: Path, remote: str, paths: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "ssh_config"
        config.write_text(openssh_config(host))  # type: ignore[arg-type]
        extract = f"mkdir -p {shlex.quote(remote)} && tar -xf - -C {shlex.quote(remote)}"
        ssh = subprocess.Popen(
            ["ssh", "-F", str(config), TARGET_ALIAS, extract],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert ssh.stdin is not None
        try:
            with tarfile.open(fileobj=ssh.stdin, mode="w|") as tar:
                for path in paths:
                    tar.add(local / path, arcname=path, recursive=False)
        finally:
            ssh.stdin.close()
            err = ssh.stderr.read().decode(errors="replace") if ssh.stderr else ""
            code = ssh.wait()
        if code != 0:
            raise UploadError(f"{host.name}: sending data failed (ssh exit {code}): {err.strip()}")


def _send_files(host: Host, local: Path, remote: str, paths: list[str]) -> None:
    dirs = sorted({str(Path(remote, p).parent) for p in paths})
    result = host.run(["mkdir", "-p", *dirs], timeout=120)
    if not result.ok:
        raise UploadError(f"{host.name}: cannot create {remote}: {result.tail()}")
    for path in paths:
        target = f"{remote}/{path}"
        partial = f"{Path(target).parent!s}/.{Path(path).name}.part"
        host.put(str(local / path), partial)
        moved = host.run(["mv", "-f", partial, target], timeout=60)
        if not moved.ok:
            raise UploadError(f"{host.name}: cannot move {partial} into place: {moved.tail()}")
