"""Acting on the domain's decisions: discover, converge one service, run, follow.

The rotation layer reads the truth through the adapters, asks :mod:`shared.domain` what
to do, does it, and writes what happened as run records. It never talks to an SDK itself.
"""
