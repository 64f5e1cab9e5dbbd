"""``certrotate``: the rotation engine for operators and pipelines (see :mod:`certrotate.cli`)."""
