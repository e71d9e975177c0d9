"""mnist-platform frontend: the prediction API, version routing, metrics, the page and the client."""

__version__ = "0.1.0"
