"""Read-only views for operators: the inventory, run history and their HTML pages.

Status reads Key Vault, the cloud services and the run records and never writes; the
status page, ``GET /api/status``, the run pages and ``certrotate status``/``history``
all render what this package builds.
"""
