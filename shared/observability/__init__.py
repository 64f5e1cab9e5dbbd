"""What the app tells people and machines: log context, telemetry, notifications.

Nothing here decides anything about a rotation; it reports finished runs and labels
log lines. The rotation layer calls it; it never calls the rotation layer back.
"""
