"""``python -m remote.hostctl``: the stable on-host name of :mod:`remote.onhost.hostctl`."""

import sys

from remote.onhost.hostctl import main

if __name__ == "__main__":
    sys.exit(main())
