"""Event ingestion rate of the watch stream against ``ssh host cat`` of the same file.

A finished run directory with N events is written, a loopback sshd started
(the tests' own, tests/sshd.py), and the same events.jsonl is read twice per
round: by ``remote.watch.follow`` over paramiko (the watcher on the host parses
each event and wraps it in a JSON line; the client parses it again into typed
items), and by the OpenSSH client running ``cat`` (bytes only, lines counted).
Prints events/s for both and the ratio. Target: follow >= 0.5 x cat.

    uv run python bench/stream.py [--events 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.sshd: the loopback sshd the tests use

from remote.watch import EventItem, follow  # noqa: E402
from tests.sshd import _new_server, keygen  # noqa: E402


def write_run(run_dir: Path, n: int) -> None:
    run_dir.mkdir(parents=True)
    t = time.time()
    with open(run_dir / "events.jsonl", "w") as fh:
        for seq in range(1, n + 1):
            event = {"seq": seq, "type": "step", "time": t + seq * 1e-3, "epoch": 1 + seq // 1000,
                     "step": seq % 1000, "steps": 1000, "global_step": seq, "loss": 1.0 / seq,
                     "lr": 1e-3, "data_s": 0.001, "compute_s": 0.05, "samples": 24}  # fmt: skip
            fh.write(json.dumps(event) + "\n")
        fh.write(json.dumps({"seq": n + 1, "type": "status", "time": t, "status": "completed"}))
        fh.write("\n")
    (run_dir / "train.log").write_text("done\n")
    manifest = {"id": run_dir.name, "model": "bench", "pid": 0, "status": "completed"}
    (run_dir / "run.json").write_text(json.dumps(manifest))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="emo-bench-stream-"))
    os.environ["HOME"] = str(root / "home")
    os.environ["XDG_CONFIG_HOME"] = str(root / "xdg")
    os.environ.pop("SSH_AUTH_SOCK", None)
    (root / "home" / ".ssh").mkdir(parents=True)
    keys = root / "keys"
    keys.mkdir()
    keygen(keys / "id_ed25519", "client")
    server = _new_server(root / "sshd", keys).start()
    try:
        known = root / "xdg" / "emoconsole" / "known_hosts"
        known.parent.mkdir(parents=True)
        known.write_text(server.known_hosts_line())
        run_dir = root / "runs" / "bench"
        write_run(run_dir, args.events)
        size = (run_dir / "events.jsonl").stat().st_size
        ssh = ["ssh", "-p", str(server.port), "-i", str(server.client_key),
               "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
               "-o", f"UserKnownHostsFile={known}", "-o", "StrictHostKeyChecking=yes",
               f"{server.user}@127.0.0.1"]  # fmt: skip
        times: dict[str, list[float]] = {"ssh cat": [], "follow": []}
        for _ in range(args.rounds):
            start = time.perf_counter()
            out = subprocess.run([*ssh, "cat", str(run_dir / "events.jsonl")],
                                 capture_output=True, check=True)  # fmt: skip
            lines = out.stdout.count(b"\n")
            times["ssh cat"].append(time.perf_counter() - start)
            assert lines == args.events + 1

            host = server.ssh_host("bench")
            start = time.perf_counter()
            got = sum(
                1
                for item in follow(host, str(run_dir), interval=2.0)
                if isinstance(item, EventItem)
            )
            times["follow"].append(time.perf_counter() - start)
            host.close()
            assert got == args.events + 1, got
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)

    n = args.events + 1
    best = {name: min(ts) for name, ts in times.items()}
    print(f"{n} events ({size / 2**20:.1f} MiB) over loopback, {args.rounds} rounds")
    for name, ts in times.items():
        rounds = " ".join(f"{t:.2f}" for t in ts)
        print(f"  {name:<8} best {best[name]:6.2f} s = {n / best[name]:9.0f} events/s ({rounds})")
    ratio = best["ssh cat"] / best["follow"]
    print(f"ingestion ratio follow/cat: {ratio:.2f} (target >= 0.5)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
