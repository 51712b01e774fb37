"""The store terminal's HTTP API: the app factory, its routes and request/response schemas."""
