"""Download throughput: `emoconsole download` (``download_run``, auto method)
against plain ``scp`` of the same 1 GiB file from the same loopback sshd, in the
same run. Target: download MB/s >= 0.8 x scp MB/s.

``download_run`` does more than scp: the host hashes the file (SHA-256), the
client hashes what lands and renames it into place. Its OpenSSH client prefers
AES-GCM (see remote.download.CIPHERS), so scp is timed twice: as a user
would type it (OpenSSH's default cipher) and with ``-c aes128-gcm@openssh.com``,
which shows what the verification itself costs. Rounds alternate between the
contenders so that drift on a shared machine hits all of them alike; the best
round of each is compared (noise only ever slows a round down).

    uv run python bench/download.py [--size-mib 1024] [--rounds 3] [--also rsync,sftp]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.sshd: the loopback sshd the tests use

from remote.download import download_run  # noqa: E402
from tests.sshd import SSHServer, _new_server, keygen  # noqa: E402


def write_random(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(1 << 20)
    with open(path, "wb") as fh:
        for i in range(size // len(block)):
            # A different block each MiB, cheaply: no cipher or compression gets a break.
            fh.write(i.to_bytes(8, "little") + block[8:])


def scp_argv(server: SSHServer, known_hosts: Path, src: Path, dst: Path, cipher: str | None):
    argv = [
        "scp", "-q", "-P", str(server.port), "-i", str(server.client_key),
        "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "StrictHostKeyChecking=yes",
    ]  # fmt: skip
    if cipher:
        argv += ["-c", cipher]
    return [*argv, f"{server.user}@127.0.0.1:{src}", str(dst)]


def timed(fn: Callable[[], object]) -> float:
    subprocess.run(["sync"], check=False)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--also", default="", help="more download methods to time: rsync,sftp")
    args = parser.parse_args()
    if not shutil.which("scp"):
        print("no scp on this machine: apt-get install openssh-client")
        return 2

    root = Path(tempfile.mkdtemp(prefix="emo-bench-dl-"))
    # A private HOME and config dir: the real ~/.ssh and emoconsole config stay out.
    os.environ["HOME"] = str(root / "home")
    os.environ["XDG_CONFIG_HOME"] = str(root / "xdg")
    os.environ.pop("SSH_AUTH_SOCK", None)
    (root / "home" / ".ssh").mkdir(parents=True)
    keys = root / "keys"
    keys.mkdir()
    keygen(keys / "id_ed25519", "client")
    server = _new_server(root / "sshd", keys).start()
    try:
        known_hosts = root / "xdg" / "emoconsole" / "known_hosts"
        known_hosts.parent.mkdir(parents=True)
        known_hosts.write_text(server.known_hosts_line())
        size = args.size_mib << 20
        run_dir = root / "runs" / "bench-run"
        src = run_dir / "checkpoints" / "best.pt"
        write_random(src, size)
        host = server.ssh_host("bench")
        out = root / "out"

        def fresh() -> Path:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            return out

        contenders: dict[str, Callable[[], object]] = {
            "scp": lambda: subprocess.run(
                scp_argv(server, known_hosts, src, fresh() / "best.pt", None), check=True
            ),
            "scp -c aes128-gcm": lambda: subprocess.run(
                scp_argv(server, known_hosts, src, fresh() / "best.pt", "aes128-gcm@openssh.com"),
                check=True,
            ),
            "download (auto)": lambda: download_run(host, str(run_dir), fresh() / "run"),
        }
        for method in filter(None, args.also.split(",")):
            contenders[f"download ({method})"] = lambda m=method: download_run(
                host, str(run_dir), fresh() / "run", method=m
            )
        times: dict[str, list[float]] = {name: [] for name in contenders}
        for _ in range(args.rounds):
            for name, fn in contenders.items():
                times[name].append(timed(fn))
        report = download_run(host, str(run_dir), fresh() / "run")  # check what it brought
        assert report.file("checkpoints/best.pt").size == size
        host.close()
    finally:
        server.kill()
        shutil.rmtree(root, ignore_errors=True)

    mib = size / (1 << 20)
    print(f"{mib:.0f} MiB over loopback, {args.rounds} rounds, {os.cpu_count()} CPUs")
    best = {name: min(ts) for name, ts in times.items()}
    for name, ts in times.items():
        rounds = " ".join(f"{t:.2f}" for t in ts)
        print(
            f"  {name:<20} best {best[name]:6.2f} s = {mib / best[name]:7.1f} MiB/s "
            f"(median {statistics.median(ts):.2f} s; rounds: {rounds})"
        )
    ours = best["download (auto)"]
    ratio = best["scp"] / ours
    ratio_gcm = best["scp -c aes128-gcm"] / ours
    print(f"throughput ratio download/scp: {ratio:.2f} (target >= 0.8)")
    print(f"throughput ratio download/scp with the same cipher: {ratio_gcm:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
