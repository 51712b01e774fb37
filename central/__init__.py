"""invctl central: the inventory's source of truth and its event publisher."""

__version__ = "0.1.0"
