"""Generated corpora shared by every test module of one pytest session.

Module-scoped fixtures would write the same CREMA-D or MELD corpus once per
module; these are written once per session under pytest's base temp folder
(the manifest is written last, so its presence means the corpus is
complete). Tests must copy a corpus before breaking files in it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from trainers.data.synth import MANIFEST_NAME, write_corpus

# The shapes the loader and describe tests use.
CREMAD = {"actors": 3, "seed": 5, "statements": 1, "repetitions": 1}  # 3 x 17 takes
MELD = {"actors": 4, "seed": 5, "statements": 1, "repetitions": 1}  # 18 / 6 / 6 clips


def shared_corpus(factory: pytest.TempPathFactory, layout: str, **shape: int) -> Path:
    name = layout + "".join(f"-{k}{v}" for k, v in sorted(shape.items()))
    root = factory.getbasetemp() / "shared-corpora" / name
    if not (root / MANIFEST_NAME).is_file():
        write_corpus(layout, root, workers=2, **shape)
    return root
