"""The Functions app: registration only; the handlers live in ``handlers/``."""

import azure.functions as func

from handlers import keyvault_events, rotations

app = func.FunctionApp()
app.register_functions(keyvault_events.bp)
app.register_functions(rotations.bp)
