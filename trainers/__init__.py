"""Models, data and the one training engine.

This package is what gets shipped to a GPU host, so importing it must stay
cheap: no torch at package import time (the console imports
``trainers.events`` to read run directories without the training stack).
"""

__version__ = "0.1.0"
