"""Hosts and the watch stream: where runs go and how the console follows them.

- :mod:`remote.host`: the ``Host`` interface and ``Result``;
  :mod:`remote.local` (``LocalHost``) and :mod:`remote.ssh` (``SSHHost``, paramiko).
- :mod:`remote.config`: named hosts from hosts.toml / ./emoconsole.toml; ``get_host``.
- :mod:`remote.watcher`: the on-host watcher (stdlib + optional psutil; shipped with
  the run's code); :mod:`remote.watch`: ``follow``, the reconnecting client.
- :mod:`remote.errors`: the one error hierarchy.

Nothing is imported here, so that importing one module (the watcher on a GPU
host, the config in ``emoconsole hosts list``) never loads paramiko.
"""
