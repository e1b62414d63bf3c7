"""``python -m remote.manifest``: the stable on-host name of :mod:`remote.onhost.manifest`."""

import sys

from remote.onhost.manifest import main

if __name__ == "__main__":
    sys.exit(main())
