"""What runs on a training host, next to the run: the standard library only.

- :mod:`remote.onhost.watcher`: one run directory as a stream of JSON lines
  (events, log, system samples); the console's :mod:`remote.watch` reads it.
- :mod:`remote.onhost.hostctl`: launch detached, stop, list runs.
- :mod:`remote.onhost.manifest`: a run directory's files with sizes and SHA-256,
  the host's half of a download.
- :mod:`remote.onhost.proc`: whether a run's process still runs (one answer for
  the runs table and the run view).
- :mod:`remote.onhost.guard`: the sidecar ``hostctl launch`` starts beside a run on
  request: pushes it to storage, stops it on a spot or maintenance notice
  (:mod:`remote.onhost.imds`, the IMDSv2 client) or before the profile's shutdown,
  and tells a webhook how the run ended (:mod:`remote.onhost.webhook`).

These modules are shipped with the run's code and started with ``python -m``
on hosts that may have no paramiko, boto3, textual or torch: they import the
standard library, ``trainers.events``, ``trainers.rundir`` and ``trainers.runlog``
only, and psutil
when it happens to be installed (tests/test_layering.py checks this). The guard
alone imports boto3, through :mod:`remote.storage`, and only with ``--storage``.

The console starts them by their stable names, ``python -m remote.watcher``,
``remote.hostctl`` and ``remote.manifest`` (one-line shims beside this
package): code deployed before they moved here has those names only, and a
console of either version then still talks to a host of either version.
"""
