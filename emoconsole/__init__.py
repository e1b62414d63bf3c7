"""The console: a Typer CLI (and, later, a Textual dashboard) over runs.

Never imports torch: it reads run directories (trainers.events, trainers.rundir
are stdlib-only) and launches training as separate processes.
"""

__version__ = "0.1.0"
