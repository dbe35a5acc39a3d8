"""The Functions entry point: a registry of blueprints, nothing else."""

import azure.functions as func

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
