"""The function app with sync functions, for P10's side-by-side runs: the same domains, handlers
and pipeline as `function_app`, registered with `asynchronous=False`, so the worker runs them
on its thread pool instead of its event loop. Never deployed (`function_app.py` does not import
it)."""

from __future__ import annotations

import azure.functions as func

from shared.domains.case import CASE
from shared.domains.customer import CUSTOMER
from shared.domains.routes import blueprint
from shared.domains.vehicle import VEHICLE
from shared.health import bp as health
from shared.openapi import bp as openapi

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(health)
app.register_functions(openapi)
for domain in (CUSTOMER, CASE, VEHICLE):
    app.register_functions(blueprint(domain, asynchronous=False))
