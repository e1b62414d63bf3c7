"""``python -m remote.watcher``: the stable on-host name of :mod:`remote.onhost.watcher`."""

import sys

from remote.onhost.watcher import main

if __name__ == "__main__":
    sys.exit(main())
