"""The dashboard's three budgets, measured on the real command in a real terminal (tmux).

(a) Time to first paint of ``emoconsole`` (no arguments): the venv's entry point
    starts in a detached tmux session of fixed size and the pane is polled until
    the dashboard's header and footer are on it. Baseline, same harness: a
    Python that prints the same words at once (tmux + interpreter start-up).
    Also the import of ``emoconsole.dashboard.app`` on its own (``-X
    importtime`` totals; torch must not be among them). Target: < 1 s.

(b) Key-to-screen latency while a run streams 10,000 items/s into the run
    view (half step events appended to events.jsonl, half lines to train.log, by
    a writer process, the app following through the real watcher). The app is
    an instrumented Dashboard in the tmux pane: it stamps each ``f`` key event
    as the driver created it and the moment the first screen update after the
    action (the header's "log: following/paused") has gone to the terminal. Keys
    are sent with ``tmux send-keys`` at random gaps, so they land at every phase
    of the run view's 4 Hz drain; the bench's own send time gives the
    end-to-end figure too (input thread and GIL included). Baseline, same
    session: the same keys with no stream. Timing inside the app, not around
    Pilot calls: Pilot's press alone costs about 100 ms, measured on these machines.
    Target: < 100 ms (p95).

(c) Memory after 1,000,000 log lines have streamed into the run view: RSS of
    the app at milestones and its peak (VmHWM). Bounded means the 1M figure is
    close to the 100k one (the log keeps LOG_MAX_LINES).

    uv run python bench/dashboard.py [--rate 10000] [--presses 40] [--lines 1000000]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
ENTRY = Path(PY).with_name("emoconsole")
SIZE = (160, 45)
SOCKET = f"emo-bench-{os.getpid()}"
RUN_ID = "20260101-120000-bench-dashboard-0001"
FIRST_PAINT_TARGET_S = 1.0
LATENCY_TARGET_MS = 100.0


# -- tmux -----------------------------------------------------------------------------------


def tmux(*args: str) -> subprocess.CompletedProcess[str]:
    # Our own server socket: never touches anyone else's sessions.
    return subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True)


def pane(name: str) -> str:
    return tmux("capture-pane", "-p", "-t", name).stdout


def start(name: str, command: str, cwd: Path) -> None:
    out = tmux("new-session", "-d", "-s", name, "-x", str(SIZE[0]), "-y", str(SIZE[1]),
               "-c", str(cwd), command)  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"tmux new-session: {out.stderr.strip()}")


def pane_cpu(name: str) -> float:
    """CPU seconds (user + system) the pane's process has used so far: on a machine
    shared with other work, the part of the wall time that is the app's own."""
    pid = tmux("display-message", "-p", "-t", name, "#{pane_pid}").stdout.strip()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_pane(name: str, marks: tuple[str, ...], timeout: float = 60.0) -> float:
    """Seconds until every mark is on the pane (polled every 5 ms)."""
    t0 = time.perf_counter()
    while True:
        text = pane(name)
        if all(mark in text for mark in marks):
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError(f"{name}: {marks} not on the pane after {timeout} s:\n{text}")
        time.sleep(0.005)


def time_to_screen(name: str, command: str, cwd: Path, marks: tuple[str, ...]) -> float:
    t0 = time.perf_counter()
    start(name, command, cwd)
    try:
        wait_pane(name, marks)
        return time.perf_counter() - t0
    finally:
        tmux("kill-session", "-t", name)


def env_prefix(home: Path, bytecode: bool = True) -> str:
    """No user hosts file (only this machine), a private cache, a terminal with colours.

    ``bytecode``: compiled modules cached under ``home`` (what any installed Python has
    from its second start on, or from the first after pip's compile step). This
    sandbox sets PYTHONDONTWRITEBYTECODE and uv installs without .pyc files, so
    without it every start compiles textual and rich from source: the cold figure."""
    env = f"env EMOCONSOLE_CONFIG={home / 'no-hosts.toml'} TERM=xterm-256color "
    env += f"EMOCONSOLE_CACHE={home / 'cache'} "
    if bytecode:
        env = env.replace("env ", "env -u PYTHONDONTWRITEBYTECODE ", 1)
        env += f"PYTHONPYCACHEPREFIX={home / 'pycache'} "
    else:
        env += f"PYTHONDONTWRITEBYTECODE=1 PYTHONPYCACHEPREFIX={home / 'no-pycache'} "
    return env


# -- (a) first paint ------------------------------------------------------------------------


def python_env(home: Path) -> dict[str, str]:
    """The warm-bytecode environment of :func:`env_prefix`, for plain subprocesses."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(home / "pycache")
    return env


def import_totals(home: Path) -> dict[str, Any]:
    """``-X importtime`` of the dashboard's module (bytecode warm), and its wall time
    against a bare Python."""
    code = "import emoconsole.dashboard.app"
    env = python_env(home)
    subprocess.run([PY, "-c", code], check=True, cwd=REPO, env=env)  # fills the bytecode cache
    out = subprocess.run([PY, "-X", "importtime", "-c", code], capture_output=True, text=True,
                         check=True, cwd=REPO, env=env)  # fmt: skip
    self_us, top = 0, []
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not m:
            continue
        self_us += int(m.group(1))
        if len(m.group(3)) == 3:  # what emoconsole.dashboard.app imports directly
            top.append((int(m.group(2)), m.group(4)))
    names = {m.group(1) for m in re.finditer(r"\| *(\S+)$", out.stderr, re.M)}
    walls = {}
    for label, snippet in (("python -c pass", "pass"), ("import emoconsole.dashboard.app", code)):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([PY, "-c", snippet], check=True, cwd=REPO, env=env)
            best = min(best, time.perf_counter() - t0)
        walls[label] = best
    heavy = sorted(n for n in names if n.split(".")[0] in ("torch", "paramiko", "boto3"))
    return {"self_s": self_us / 1e6, "top": sorted(top, reverse=True)[:6], "heavy": heavy,
            "walls": walls}  # fmt: skip


# The floor: what any Textual app with a header, a table and a footer costs to paint.
MINIMAL_APP = """
from textual.app import App
from textual.widgets import DataTable, Footer, Header

class Minimal(App):
    TITLE = "emoconsole"
    BINDINGS = [("q", "quit", "Quit")]

    def compose(self):
        yield Header()
        yield DataTable()
        yield Footer()

Minimal().run()
"""


def first_paint(root: Path, rounds: int) -> dict[str, list[float]]:
    """Seconds from ``tmux new-session`` to the marks on the pane, per command and round.
    One untimed start first fills the bytecode cache (see :func:`env_prefix`)."""
    work = root / "paint"
    (work / "runs").mkdir(parents=True)
    write_manifest(work / "runs" / RUN_ID, status="completed")
    warm, cold = env_prefix(root), env_prefix(root, bytecode=False)
    marks = ("emoconsole", "Quit")  # the header's title, the footer's last binding
    baseline = f"{PY} -c \"print('emoconsole Quit'); import time; time.sleep(30)\""
    minimal = root / "minimal_app.py"
    minimal.write_text(MINIMAL_APP)
    commands = {
        "harness: python printing the marks": f"{warm} {baseline}",
        "floor: a minimal Textual app": f"{warm} {PY} {minimal}",
        "emoconsole (venv entry point)": f"{warm} {ENTRY}",
        "uv run emoconsole": f"{warm} uv run --project {REPO} emoconsole",
        "emoconsole, no bytecode cache (cold)": f"{cold} {ENTRY}",
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    times["emoconsole: the run's row listed"] = []
    times["emoconsole: CPU s to first paint"] = []
    times["floor: CPU s to first paint"] = []
    time_to_screen("warmup", f"{warm} {ENTRY}", work, marks)
    for i in range(rounds):
        for j, (name, command) in enumerate(commands.items()):
            session = f"paint{i}{j}"
            t0 = time.perf_counter()
            start(session, command, work)
            try:
                wait_pane(session, marks)
                times[name].append(time.perf_counter() - t0)
                if name.startswith("floor"):
                    times["floor: CPU s to first paint"].append(pane_cpu(session))
                if name.startswith("emoconsole ("):
                    times["emoconsole: CPU s to first paint"].append(pane_cpu(session))
                    wait_pane(session, (RUN_ID,))
                    times["emoconsole: the run's row listed"].append(time.perf_counter() - t0)
            finally:
                tmux("kill-session", "-t", session)
    return times


# -- the streaming run ------------------------------------------------------------------------


def write_manifest(run: Path, status: str = "running") -> None:
    """A run owned by this bench process (alive all along, so never shown as crashed)."""
    run.mkdir(parents=True, exist_ok=True)
    manifest = {"id": run.name, "model": "bench", "pid": os.getpid(), "status": status,
                "host": socket.gethostname(), "started_at": time.time(),
                "config": {"train": {"epochs": 1}}}  # fmt: skip
    (run / "run.json").write_text(json.dumps(manifest))
    with open(run / "events.jsonl", "a") as fh:
        t = time.time()
        fh.write(json.dumps({"seq": 1, "type": "status", "time": t, "status": "running"}) + "\n")
        fh.write(json.dumps({"seq": 2, "type": "epoch_start", "time": t, "epoch": 1, "epochs": 1,
                             "steps": 10**8, "lr": 1e-3}) + "\n")  # fmt: skip
        if status != "running":
            fh.write(json.dumps({"seq": 3, "type": "status", "time": t, "status": status}) + "\n")
    (run / "train.log").touch()


def writer_main(args: argparse.Namespace) -> int:
    """Append ``rate`` items/s (half step events, half log lines) in 100 ticks/s, until
    ``seconds`` are up or ``lines`` log lines are written; print what was written."""
    run = Path(args.run)
    share = args.log_share
    per_tick = args.rate / 100
    seq, step, lines = 2, 0, 0
    t0 = time.perf_counter()
    tick = 0
    with open(run / "events.jsonl", "a") as ev, open(run / "train.log", "a") as log:
        while True:
            elapsed = time.perf_counter() - t0
            if (args.seconds and elapsed >= args.seconds) or (args.lines and lines >= args.lines):
                break
            tick += 1
            n_log = round(tick * per_tick * share) - round((tick - 1) * per_tick * share)
            n_ev = round(tick * per_tick * (1 - share)) - round((tick - 1) * per_tick * (1 - share))
            now = time.time()
            chunk = []
            for _ in range(n_ev):
                seq, step = seq + 1, step + 1
                chunk.append(json.dumps({"seq": seq, "type": "step", "time": now, "epoch": 1,
                                         "step": step, "steps": 10**8, "global_step": step,
                                         "loss": 1.0 / step, "lr": 1e-3, "data_s": 0.001,
                                         "compute_s": 0.05, "samples": 24}))  # fmt: skip
            if chunk:
                ev.write("\n".join(chunk) + "\n")
                ev.flush()
            if n_log:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S")
                log.write("".join(f"{stamp} INFO  epoch 1 step {lines + k + 1} loss "
                                  f"{1.0 / (lines + k + 1):.6f} lr 0.001 data 1ms compute 50ms\n"
                                  for k in range(n_log)))  # fmt: skip
                log.flush()
                lines += n_log
            # Paced against the start, so a late tick is made up, not lost.
            delay = t0 + tick / 100 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    took = time.perf_counter() - t0
    print(json.dumps({"steps": step, "lines": lines, "seconds": took, "last_seq": seq}))
    return 0


# -- the instrumented app ---------------------------------------------------------------------


def app_main(args: argparse.Namespace) -> int:
    """The real Dashboard on the real terminal, with stopwatches (see the module doc)."""
    import psutil
    from textual import events

    import emoconsole.dashboard.app as app_module
    from emoconsole.dashboard.app import Dashboard
    from emoconsole.dashboard.run_view import RunScreen

    proc = psutil.Process()
    milestones = sorted(
        {10_000, 100_000, 250_000, 500_000} | ({args.lines} if args.lines else set())
    )
    results: dict[str, Any] = {"presses": [], "memory": [], "lines_in": 0, "steps_in": 0}

    def peak_rss() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return 0

    class BenchRunScreen(RunScreen):
        def action_toggle_follow(self) -> None:
            super().action_toggle_follow()
            app.pending.append(app.keys.popleft() if app.keys else time.monotonic())

        def _add_log_lines(self, lines: list[str]) -> None:
            super()._add_log_lines(lines)
            results["lines_in"] += len(lines)
            results["steps_in"] = self.state.step
            while milestones and results["lines_in"] >= milestones[0]:
                results["memory"].append(
                    (milestones.pop(0), time.monotonic(), proc.memory_info().rss, peak_rss())
                )
                if not milestones and args.lines:
                    app.exit()

    class BenchDashboard(Dashboard):
        # A subclass's relative CSS_PATH resolves beside its own module: point at the app's.
        CSS_PATH = str(Path(app_module.__file__).with_name(str(Dashboard.CSS_PATH)))

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.keys: deque[float] = deque()  # key events seen, not yet acted on
            self.pending: list[float] = []  # acted on, not yet on the screen

        def run_screen(self, host: str, run_id: str) -> RunScreen:
            return BenchRunScreen(host, run_id, hosts=self.hosts, interval=self.interval)

        async def on_event(self, event: events.Event) -> None:
            if isinstance(event, events.Key) and event.key == "f" and not event.is_forwarded:
                self.keys.append(event.time)  # when the driver turned the bytes into a key
            await super().on_event(event)

        def _display(self, screen: Any, renderable: Any) -> None:
            super()._display(screen, renderable)
            if self.pending and renderable is not None:
                # The first update after the action: the one carrying the new header.
                now, cpu = time.monotonic(), time.thread_time()
                results["presses"].extend((key, now, cpu) for key in self.pending)
                self.pending.clear()

    app = BenchDashboard(refresh_s=60.0, interval=1.0, open_run=("local", args.run))
    results["start"] = time.monotonic()
    results["gc"] = []  # (generation, start, seconds) of every collection on any thread
    gc_start: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[:] = [time.monotonic()]
        elif gc_start:
            results["gc"].append((info["generation"], gc_start[0], time.monotonic() - gc_start[0]))

    gc.callbacks.append(on_gc)
    app.run()
    results["tracked"] = [len(gc.get_objects(g)) for g in (0, 1, 2)] + [gc.get_freeze_count()]
    results["first_paint_s"] = app.first_paint_s
    results["peak_rss"] = peak_rss()
    Path(args.out).write_text(json.dumps(results))
    return 0


def run_app(root: Path, name: str, lines: int = 0) -> tuple[str, Path, Path]:
    """The instrumented app in a pane, on a fresh run ``root/name/runs/RUN_ID`` opened by id
    (the local host lists ./runs), once its run view is on the screen."""
    work = root / name
    run = work / "runs" / RUN_ID
    write_manifest(run)
    out = root / f"{name}.json"
    command = (f"{env_prefix(root)} {PY} {Path(__file__).resolve()} _app --run {RUN_ID} "
               f"--out {out} --lines {lines}")  # fmt: skip
    start(name, command, work)
    wait_pane(name, ("following",))  # the run view is up
    return name, out, run


def wait_file(path: Path, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"no results from {name} after {timeout} s:\n{pane(name)}")
        time.sleep(0.1)
    time.sleep(0.1)
    return json.loads(path.read_text())


def writer(run: Path, rate: float, seconds: float = 0, lines: int = 0,
           log_share: float = 0.5) -> subprocess.Popen[str]:  # fmt: skip
    return subprocess.Popen(
        [PY, str(Path(__file__).resolve()), "_writer", "--run", str(run), "--rate", str(rate),
         "--seconds", str(seconds), "--lines", str(lines), "--log-share", str(log_share)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def latency(root: Path, rate: float, presses: int) -> dict[str, Any]:
    name, out, run = run_app(root, "latency")
    rng = random.Random(0)
    sent: list[float] = []

    def press_keys(n: int) -> None:
        for _ in range(n):
            time.sleep(rng.uniform(0.15, 0.35))
            sent.append(time.monotonic())
            tmux("send-keys", "-t", name, "f")

    idle = max(10, presses // 3)
    press_keys(idle)
    stream_s = presses * 0.25 + 6
    feed = writer(run, rate, seconds=stream_s)
    time.sleep(3.0)  # the stream at full rate before the first key
    press_keys(presses)
    written = json.loads(feed.communicate()[0])
    time.sleep(2.0)  # let the view catch up, then count what it got
    tmux("send-keys", "-t", name, "q")
    got = wait_file(out, name, 60)
    tmux("kill-session", "-t", name)
    pairs = got["presses"]
    if len(pairs) != len(sent):
        raise RuntimeError(f"{len(sent)} keys sent, {len(pairs)} screen updates seen")
    inside = [1000 * (shown - key) for key, shown, _ in pairs]
    end_to_end = [1000 * (shown - s) for (_, shown, _), s in zip(pairs, sent, strict=True)]
    # CPU of the UI thread per wall second between the first and last streaming key: how
    # busy the stream keeps it (less sensitive to other load on the machine than latency).
    (_, w0, c0), (_, w1, c1) = pairs[idle], pairs[-1]
    # Collections while streaming, and the keys whose wait overlapped one.
    pauses = [(g, t, d) for g, t, d in got["gc"] if w0 <= t <= w1]
    hit = sum(any(key <= t <= shown for _, t, _ in pauses) for key, shown, _ in pairs[idle:])
    return {"idle_inside": inside[:idle], "idle_e2e": end_to_end[:idle],
            "stream_inside": inside[idle:], "stream_e2e": end_to_end[idle:],
            "written": written, "got": got, "ui_cpu": (c1 - c0) / (w1 - w0),
            "gc": pauses, "gc_hit": hit, "gc_window": w1 - w0}  # fmt: skip


def memory(root: Path, lines: int) -> dict[str, Any]:
    name, out, run = run_app(root, "memory", lines=lines)
    t0 = time.monotonic()
    # As fast as the watcher and the view take them: 200,000 lines/s offered.
    feed = writer(run, 200_000, lines=lines, log_share=1.0)
    got = wait_file(out, name, 900)
    written = json.loads(feed.communicate()[0])
    tmux("kill-session", "-t", name)
    got["t0"] = t0
    got["written"] = written
    return got


# -- report -----------------------------------------------------------------------------------


def stats(ms: list[float]) -> str:
    ordered = sorted(ms)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"median {statistics.median(ordered):6.1f}  p95 {p95:6.1f}  max {ordered[-1]:6.1f} ms"
            f"  (n={len(ordered)})")  # fmt: skip


def p95(ms: list[float]) -> float:
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=10_000, help="items/s streamed in (b)")
    parser.add_argument("--presses", type=int, default=40, help="keys sent while streaming")
    parser.add_argument("--lines", type=int, default=1_000_000, help="log lines for (c)")
    parser.add_argument("--rounds", type=int, default=3, help="first-paint rounds")
    parser.add_argument("--only", choices=("paint", "latency", "memory"), action="append")
    args = parser.parse_args()
    parts = set(args.only or ("paint", "latency", "memory"))
    if shutil.which("tmux") is None:
        print("tmux is not installed: this bench needs a real terminal", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="emo-bench-dash-"))
    start("keep", "sleep 3600", root)  # the tmux server, started once outside the timings
    tmux("set-option", "-g", "remain-on-exit", "on")  # a crashed app's traceback stays
    try:
        if "paint" in parts:
            imports = import_totals(root)
            print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs at the start")
            print("(a) first paint, tmux pane "
                  f"{SIZE[0]}x{SIZE[1]}, {args.rounds} rounds (best, all)")  # fmt: skip
            for name, ts in first_paint(root, args.rounds).items():
                print(f"  {name:<38} {min(ts):6.3f} s  ({' '.join(f'{t:.3f}' for t in ts)})")
            walls = imports["walls"]
            dash = walls["import emoconsole.dashboard.app"]
            extra = dash - walls["python -c pass"]
            print(f"  import emoconsole.dashboard.app: {dash:.3f} s wall vs python -c pass "
                  f"{walls['python -c pass']:.3f} s (+{extra:.3f} s); "
                  f"-X importtime self total {imports['self_s']:.3f} s")  # fmt: skip
            print(
                "  largest direct imports of emoconsole.dashboard.app: "
                + ", ".join(f"{n} {us / 1000:.0f} ms" for us, n in imports["top"])
            )
            print(f"  torch/paramiko/boto3 imported: {imports['heavy'] or 'none'}")
            print(f"  target: first paint < {FIRST_PAINT_TARGET_S:.0f} s")
        if "latency" in parts:
            lat = latency(root, args.rate, args.presses)
            w, got = lat["written"], lat["got"]
            print(f"(b) key -> screen while streaming {w['steps'] + w['lines']:,} items in "
                  f"{w['seconds']:.1f} s ({(w['steps'] + w['lines']) / w['seconds']:,.0f}/s: "
                  f"{w['steps']:,} step events, {w['lines']:,} log lines)")  # fmt: skip
            print(f"  view received {got['lines_in']:,} of {w['lines']:,} log lines, step "
                  f"{got['steps_in']:,} of {w['steps']:,}")  # fmt: skip
            print(f"  idle      key event -> screen  {stats(lat['idle_inside'])}")
            print(f"  idle      send-keys -> screen  {stats(lat['idle_e2e'])}")
            print(f"  streaming key event -> screen  {stats(lat['stream_inside'])}")
            print(f"  streaming send-keys -> screen  {stats(lat['stream_e2e'])}")
            print(f"  UI thread CPU while streaming: {lat['ui_cpu']:.2f} s per s")
            for gen in (0, 1, 2):
                ms = [1000 * d for g, _, d in lat["gc"] if g == gen]
                if ms:
                    print(f"  GC generation {gen} while streaming: {len(ms)} in "
                          f"{lat['gc_window']:.0f} s, {sum(ms):.0f} ms in all, "
                          f"max {max(ms):.1f} ms")  # fmt: skip
            print(f"  tracked objects at the end, generations 0/1/2 and frozen: {got['tracked']}")
            held = f"{lat['gc_hit']} of {len(lat['stream_inside'])}"
            print(f"  keys whose wait held a collection: {held}")
            print(
                f"  target: < {LATENCY_TARGET_MS:.0f} ms (p95, key event -> screen): "
                f"{'met' if p95(lat['stream_inside']) < LATENCY_TARGET_MS else 'MISSED'}"
            )
        if "memory" in parts:
            mem = memory(root, args.lines)
            w = mem["written"]
            rows = mem["memory"]
            took = rows[-1][1] - mem["t0"]
            print(f"(c) memory while {mem['lines_in']:,} log lines streamed into the run view "
                  f"({took:.1f} s, {mem['lines_in'] / took:,.0f} lines/s; writer "
                  f"{w['lines']:,} in {w['seconds']:.1f} s)")  # fmt: skip
            for lines, _t, rss, peak in rows:
                print(f"  after {lines:>9,} lines: RSS {rss / 2**20:6.1f} MiB, "
                      f"peak {peak / 2**20:6.1f} MiB")  # fmt: skip
            base = next(r for r in rows if r[0] >= 100_000)
            growth = (rows[-1][2] - base[2]) / 2**20
            print(f"  growth from 100k to {rows[-1][0]:,} lines: {growth:+.1f} MiB; "
                  f"peak RSS {mem['peak_rss'] / 2**20:.1f} MiB")  # fmt: skip
            print(
                "  target: bounded (the log widget keeps LOG_MAX_LINES lines): "
                f"{'met' if growth < 50 else 'MISSED'}"
            )
    finally:
        tmux("kill-server")
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("_app", "_writer"):
        sub = argparse.ArgumentParser()
        sub.add_argument("mode")
        sub.add_argument("--run", required=True)
        sub.add_argument("--out")
        sub.add_argument("--lines", type=int, default=0)
        sub.add_argument("--rate", type=float, default=10_000)
        sub.add_argument("--seconds", type=float, default=0)
        sub.add_argument("--log-share", type=float, default=0.5)
        sub_args = sub.parse_args()
        sys.exit(app_main(sub_args) if sub_args.mode == "_app" else writer_main(sub_args))
    sys.exit(main())
