"""EC2 hosts: launch or reuse a tagged instance for a profile, then reach it over SSH.

- :mod:`remote.ec2.api`: tags, errors, clients, instances;
- :mod:`remote.ec2.launch`: launch or reuse (key pair, security group, user data, undo);
- :mod:`remote.ec2.iam`: the instance profile for a profile's ``storage`` prefix;
- :mod:`remote.ec2.instances`: list, stop, terminate (tagged only);
- :mod:`remote.ec2.prices`: spot history and the on-demand table;
- :mod:`remote.ec2.host`: :class:`~remote.ec2.host.Ec2Host`, the instance as an SSH host;
- :mod:`remote.ec2.cluster`: K instances for one torchrun job.

A profile is an ``[ec2.NAME]`` table (:class:`remote.config.Ec2Profile`). Once
its instance runs, the host ``NAME`` is an :class:`~remote.ec2.host.Ec2Host`: an
:class:`~remote.ssh.SSHHost` whose address is looked up from the running tagged
instance each time it connects, so ``deploy``, ``watch`` and ``download`` work
on it unchanged. Using the host never launches anything (that costs money and
is ``emoconsole hosts launch NAME``, said in the error when nothing runs).

The safety rules, and where each is enforced:

- **Tags.** Every instance, root volume, security group, key pair, IAM role
  and instance profile created here carries ``emoconsole:managed=true`` and
  ``emoconsole:profile=NAME``. Listing, stopping and terminating ask EC2 for
  tagged resources only *and* check the tag again in code
  (:func:`remote.ec2.api.is_managed`) before acting, so an instance without it
  is never touched, whatever its name.
- **Ingress.** The security group has exactly one inbound rule: TCP 22 from
  the caller's address (``/32``; ``/128`` for IPv6). A later launch from
  another address replaces the rule rather than adding one.
- **No credentials from the laptop on the instance.** IMDSv2 is required
  (hop limit 1), user data holds only the shutdown timer, and nothing here
  reads, passes or prints the caller's credentials: boto3 finds them itself.
  Without ``storage`` no instance profile is attached, so the instance holds
  no AWS credentials at all. With ``storage = "s3://bucket/prefix"`` it gets
  a least-privilege instance profile (:mod:`remote.ec2.iam`): a tagged role
  only EC2 may assume, whose one inline policy allows put/get/delete/abort
  under ``bucket/prefix/`` and listing that prefix, nothing else; a role of
  that name that is untagged or carries any other policy is refused. (The
  on-host launcher also scrubs ``AWS_*`` from a run's environment, so the
  trainer never sees credentials either way: :mod:`remote.onhost.hostctl`.)
- **Max lifetime on the instance itself.** User data runs ``shutdown -h
  +MINUTES`` now and installs the same line as a cloud-init per-boot script,
  so a restarted instance is timed again. ``InstanceInitiatedShutdownBehavior``
  (the profile's ``on_shutdown``) makes that shutdown a stop or a terminate.
  A forgotten instance ends even if no console is running.
- **Key pairs.** A key pair the tool creates is an ed25519 key generated
  here; the private half is written with mode 0600 from its first byte
  (``os.open(..., O_EXCL, 0o600)``) and only the public half is imported.
- **Half-way failures.** Everything a launch creates is registered for undo
  before it is created; the instance is found for undo by the launch's own
  tag, so one whose ``RunInstances`` answer was lost is removed too. The
  error says what was removed and what (if anything) could not be.

Nothing is imported here. The modules import boto3 (lazily) and paramiko;
:mod:`remote.hosts` and the CLI import them only when an EC2 host is used.
"""
