"""The console: a Textual dashboard and a Typer CLI over runs on every host.

Never imports torch: it reads run directories (trainers.events, trainers.rundir
are stdlib-only) and launches training as separate processes.
"""

__version__ = "0.1.0"
