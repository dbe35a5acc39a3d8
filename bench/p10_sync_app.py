"""The domains as sync functions, for the side-by-side runs of P2 and P10: the same domains,
handlers and pipeline as `function_app`, registered with `asynchronous=False`, so the worker runs
them on its thread pool instead of its event loop. Only the domains: the health and OpenAPI
blueprints belong to `function_app`'s app, and one blueprint indexed by two apps in one process
is refused the second time. Never deployed (`function_app.py` does not import it)."""

from __future__ import annotations

import azure.functions as func

from shared.domains.case import CASE
from shared.domains.customer import CUSTOMER
from shared.domains.routes import blueprint
from shared.domains.vehicle import VEHICLE

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
for domain in (CUSTOMER, CASE, VEHICLE):
    app.register_functions(blueprint(domain, asynchronous=False))
