"""A trained model outside its training run: loading (bundle) and prediction (predict).

:func:`~trainers.inference.bundle.load_bundle` is the one way to get a model
ready for inference from a run directory; ``predict``, ``evaluate`` and
``export`` all start from the :class:`~trainers.inference.bundle.Bundle` it
returns.
"""
