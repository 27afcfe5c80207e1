"""gut–skin literature monitor: watches PubMed for gut–skin axis research, stores, tags and publishes it."""

__version__ = "0.1.0"
