"""``emoconsole``: thin commands over the library (parse, call, print).

Known errors exit non-zero with one line and a hint, never a traceback.
Heavy imports (the training stack, rich's live display) happen inside the
commands that need them, so ``emoconsole --help`` stays instant.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import typer.core

from emoconsole import ec2_cli
from emoconsole.compare_cli import compare
from emoconsole.download_cli import download
from emoconsole.hosts_cli import hosts_app, watch
from emoconsole.predict_cli import predict
from emoconsole.runs_cli import deploy, monitor, runs, stop

# The order a user meets the commands in; anything not named follows, as registered.
COMMAND_ORDER = (
    "demo", "deploy", "runs", "monitor", "watch", "stop", "download", "predict", "hosts",
)  # fmt: skip


class _Commands(typer.core.TyperGroup):
    def list_commands(self, ctx: typer.Context) -> list[str]:
        names = super().list_commands(ctx)
        first = [name for name in COMMAND_ORDER if name in names]
        return first + [name for name in names if name not in first]


# Plain (click) help, not typer's rich panels: rendering them imports rich's
# markdown, syntax and traceback modules (0.27 s of the 0.45 s `--help` took),
# and typer 0.29's panel prints a `<bool>` type after every flag, --help included.
app = typer.Typer(
    name="emoconsole",
    cls=_Commands,
    help="A terminal experiment console for emotion-recognition research. "
    "With no command it opens the dashboard.",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


@app.callback()
def dashboard(ctx: typer.Context) -> None:
    """With no command: open the dashboard (every run on every host, live)."""
    if ctx.invoked_subcommand is None:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            # No terminal to draw on (a pipe, a script, CI): the help, as before.
            typer.echo(ctx.get_help())
            raise typer.Exit(0)
        from emoconsole.dashboard import run_dashboard

        run_dashboard()


ec2_cli.register(hosts_app)  # hosts launch / instances / stop / terminate
app.add_typer(hosts_app, name="hosts")
app.command()(watch)
app.command()(download)
app.command()(compare)
app.command()(predict)
for command in (deploy, runs, monitor, stop):
    app.command()(command)

DataDir = Annotated[
    Path,
    typer.Option(help="Where the generated demo corpus lives (written once, reused after)."),
]
RunsDir = Annotated[Path, typer.Option(help="Parent directory of run directories.")]
Overrides = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Config override KEY=VALUE, e.g. --set train.epochs=5 (repeatable). "
        "See `python -m trainers config hybrid-attention` for every key.",
    ),
]


@app.command()
def demo(
    data_dir: DataDir = Path("demo-data/ravdess"),
    runs: RunsDir = Path("runs"),
    actors: Annotated[int, typer.Option(help="Actors in the generated corpus.")] = 12,
    seed: Annotated[
        int, typer.Option(help="Corpus seed (the training seed is train.seed, via --set).")
    ] = 0,
    overrides: Overrides = None,
    plain: Annotated[
        bool,
        typer.Option(
            "--plain",
            help="Rich live output instead of the dashboard (the default without a terminal).",
        ),
    ] = False,
) -> None:
    """Train hybrid-attention here on a generated corpus, live, then print the summary.

    Writes a small RAVDESS-layout corpus to --data-dir once (reused after).
    Training runs as its own process (`python -m trainers train`).
    The dashboard opens on its run: Escape shows every run on every host, q quits.
    Without a terminal, or with --plain, rich live output follows the run instead.

    Quitting before the end (q, or Ctrl-C with --plain) stops the run cleanly.
    A checkpoint is saved; `python -m trainers resume RUN` continues it.
    """
    from emoconsole.demo import DemoError, run_demo

    dashboard = not plain and sys.stdin.isatty() and sys.stdout.isatty()
    try:
        run_demo(
            data_dir, runs, actors=actors, seed=seed, overrides=overrides or [],
            dashboard=dashboard,
        )  # fmt: skip
    except DemoError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


@app.command()
def version() -> None:
    """Print the console's version."""
    from emoconsole import __version__

    typer.echo(__version__)


def main() -> None:
    app()
