"""The composition root: the ``facmon`` command and the wiring of collector, store, alerts and API.

A top-level package of its own because it is the one place that knows every other package;
the packages themselves only know the store record and interface and the config models.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
