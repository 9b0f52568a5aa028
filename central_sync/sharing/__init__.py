"""Data sharing (7.2.2, 7.4): token auth, roles, HTTP API and SOAP."""
