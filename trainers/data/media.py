"""What every media file is checked for before a decoder opens it.

FFmpeg's and libsndfile's own messages for these cases ("Invalid data found when
processing input") say nothing a user can act on. The commonest is a corpus
cloned without git-lfs (CREMA-D's repository keeps its media in LFS): every
media name then holds a ~130-byte text pointer, and the fix is a command.
"""

from __future__ import annotations

import os

from trainers.data.config import DecodeError

# The first line of every git-lfs pointer file (https://git-lfs.com/spec/v1).
LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/"
LFS_POINTER_MAX_BYTES = 1024  # pointers are about 130 bytes; media never this small


def check_media_file(path: str) -> None:
    """Raise :class:`DecodeError` with a reason a person can act on, or return."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise DecodeError(f"cannot open: {exc.strerror or exc}") from exc
    if size == 0:
        raise DecodeError("zero-byte file")
    if size <= LFS_POINTER_MAX_BYTES:
        try:
            with open(path, "rb") as fh:
                head = fh.read(len(LFS_POINTER_PREFIX))
        except OSError as exc:
            raise DecodeError(f"cannot open: {exc.strerror or exc}") from exc
        if head == LFS_POINTER_PREFIX:
            raise DecodeError(
                "a git-lfs pointer file, not the media: the corpus was cloned without "
                "git-lfs; fetch the media with `git lfs install && git lfs pull` in its clone"
            )
