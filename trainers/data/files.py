"""Walking a corpus folder: one rule for every reader of media files.

Sorted, hidden files and folders skipped (macOS's ``._name.mp4`` resource forks
and ``.DS_Store`` that zip tools leave included), directory links followed
once (a link loop or a second link to the same folder is not walked twice).
Standard library only: the console ships a user's folders to a host with the
same rule that trainers will read them with there.
"""

from __future__ import annotations

import os
from collections.abc import Collection


def walk_files(root: str, suffixes: Collection[str] | None = None) -> list[str]:
    """Paths of the files under ``root`` (with one of ``suffixes``, lower case, when
    given), in sorted order."""
    found: list[str] = []
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if suffixes is not None and os.path.splitext(name)[1].lower() not in suffixes:
                continue
            found.append(os.path.join(dirpath, name))
    return found
