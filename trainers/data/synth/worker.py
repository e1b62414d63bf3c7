"""A child process that renders recordings for :func:`write_corpus`.

Why it looks like this:

* Parallelism uses plain subprocesses (``python -m trainers.data.synth.worker``)
  fed one task per line on stdin and answering one JSON line per recording on
  stdout, rather than ``multiprocessing``. Spawned pools re-import the
  caller's ``__main__`` (which breaks unguarded scripts and ``__main__.py``
  files), and forked pools inherit whatever threads the caller runs (torch,
  a Textual app) and can deadlock. A fresh interpreter has neither problem,
  and the parent stays in control of progress and of stopping the children.
* Tasks are handed out one at a time as workers finish, so a slow clip never
  leaves a worker idle; results carry everything the manifest needs, and the
  parent sorts them, so completion order cannot leak into the output.
* Library chatter written to stdout would corrupt the protocol, so the
  worker moves its real stdout aside and points fd 1 at stderr.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import sys
import traceback


def main() -> int:
    proto = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # anything printed by libraries goes to stderr
    try:
        import cv2

        cv2.setNumThreads(1)  # one process per core already
        from pathlib import Path

        header = json.loads(sys.stdin.readline())
        mod = importlib.import_module(header["module"])
        out = Path(header["out"])
        for line in sys.stdin:
            if not line.strip():
                continue
            task = mod.Task(**json.loads(line))
            rec = mod.write(task, out)
            proto.write(json.dumps({"ok": dataclasses.asdict(rec)}) + "\n")
    except Exception:
        proto.write(json.dumps({"error": traceback.format_exc()}) + "\n")
        return 1
    finally:
        proto.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
