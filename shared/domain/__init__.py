"""The rotation's domain: pure data, parsing and decisions, no I/O.

Everything here can be unit-tested with values alone: the snapshot model, the cscfg
parser, event and queue-message schemas, request validation, the planner and the renewal
decision (each returns a result with a reason constant), the journal's transition table,
the backoff rule, the package and destination allow-lists and the error types. It imports
nothing of ours outside this package (an import-linter contract in ``make lint``).
"""
