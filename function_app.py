"""The Functions entry point: a registry of blueprints, and the start-up warm-up (last)."""

import azure.functions as func

from shared import warmup
from shared.domains.case import bp as cases
from shared.domains.customer import bp as customers
from shared.domains.vehicle import bp as vehicles
from shared.health import bp as health
from shared.openapi import bp as openapi

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(health)
app.register_functions(openapi)
app.register_functions(customers)
app.register_functions(cases)
app.register_functions(vehicles)

# Last, once the functions are registered: fetch on a background thread what the first request
# would otherwise wait for (keys, MSAL's discovery). Returns at once; shared/warmup.py says why.
warmup.start()
