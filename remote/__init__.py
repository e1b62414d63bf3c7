"""Hosts and what the console does with them: where runs go and how they come back.

Three roles, kept apart:

Transports and their settings (the laptop side of a connection):

- :mod:`remote.host`: the ``Host`` interface and ``Result``;
  :mod:`remote.local` (``LocalHost``), :mod:`remote.ssh` (``SSHHost``, paramiko),
  :mod:`remote.ec2` (a tagged instance, then an ``SSHHost``; a package: API,
  launch, instances, prices, host, and ``cluster`` for K instances in one job).
- :mod:`remote.config`: hosts.toml and ./emoconsole.toml parsed and checked;
  :mod:`remote.hosts`: the one factory from a name to a ``Host``.
- :mod:`remote.openssh`: the OpenSSH client with an ``SSHHost``'s settings (bulk bytes).
- :mod:`remote.errors`: the one error hierarchy.

Operations the console runs against a host:

- :mod:`remote.layout`: where code, data and runs live on a host, and the
  ``python -m`` command that finds the shipped code there.
- :mod:`remote.start`: a run request (model, host, data here or there, overrides)
  checked, started and recorded in the ledger: the one call behind ``deploy``
  and the dashboard's new-run form.
- :mod:`remote.deploy` (ship, prepare Python, check the config, start detached),
  :mod:`remote.nodes` (one job over several hosts), :mod:`remote.resume`,
  :mod:`remote.sync` (data upload), :mod:`remote.download`,
  :mod:`remote.predict` (a run's model on local files, run on its host),
  :mod:`remote.watch` (``follow``, the reconnecting stream client),
  :mod:`remote.tensorboard`, :mod:`remote.ledger` (which host each run is on).

Programs that run on the training host (standard library only):
:mod:`remote.onhost` (watcher, hostctl, manifest), started by the stable names
``python -m remote.watcher``, ``remote.hostctl``, ``remote.manifest``.

Nothing is imported here, so that importing one module (the watcher on a GPU
host, the config in ``emoconsole hosts list``) never loads paramiko.
"""
