"""The Functions app: registration only; the handlers live in ``handlers/``."""

import logging

import azure.functions as func

from handlers import keyvault_events, rotations, status, timers

app = func.FunctionApp()
app.register_functions(keyvault_events.bp)
app.register_functions(rotations.bp)
app.register_functions(timers.bp)
app.register_functions(status.bp)

# The SDKs' per-request HTTP logging is noise at Information level (URLs are redacted, but
# rotation logs should read as a runbook); warnings and errors still come through.
logging.getLogger("azure").setLevel(logging.WARNING)
