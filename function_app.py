"""The Functions entry point: a registry of blueprints, nothing else."""

import azure.functions as func

from shared.health import bp as health

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(health)
