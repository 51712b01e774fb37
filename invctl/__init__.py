"""invctl: the command line for store staff, ops and admins."""

__version__ = "0.1.0"
