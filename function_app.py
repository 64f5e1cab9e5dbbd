"""The Functions app: registration only; the handlers live in ``handlers/``."""

import logging

import azure.functions as func

from handlers import hints, keyvault_events, rotations, status, timers

app = func.FunctionApp()
app.register_functions(keyvault_events.bp)
app.register_functions(hints.bp)
app.register_functions(rotations.bp)
app.register_functions(timers.bp)
app.register_functions(status.bp)

# The SDKs' per-request HTTP logging and the credential chatter are noise at Information level
# (URLs are redacted, but rotation logs should read as a runbook); their warnings and errors
# still come through. Only those loggers: the Python worker logs under "azure.functions", and
# silencing the whole "azure" tree would hide the worker's own lines too.
for _name in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity"):
    logging.getLogger(_name).setLevel(logging.WARNING)
