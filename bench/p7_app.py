"""The function app P7's API instances serve: the API itself, plus one route that reports what
this instance counted, so that the bench can check Entra's count against the API's own.

`GET /api/_bench/counts` answers `{"oboExchanges": n, "shared": {...}}`: the exchanges this
process made (`DownstreamTokens.obo_exchanges`) and the L2 cache's counts (`shared_stats`:
hits, misses, waits, waited_hits, fallbacks). Nothing else differs from `function_app`.

The route has no key and no token: it exists only in the API host processes P7 starts for
itself, listening on 127.0.0.1 for the few seconds of the figure, and it shows two counters.
It is never part of the deployed app (`function_app.py`), which does not import it.
"""

from __future__ import annotations

import json

import azure.functions as func

from function_app import app


@app.route(route="_bench/counts", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def bench_counts(req: func.HttpRequest) -> func.HttpResponse:
    from shared.runtime import runtime

    downstream = runtime().downstream
    counts = {"oboExchanges": downstream.obo_exchanges, "shared": downstream.shared_stats}
    return func.HttpResponse(json.dumps(counts), mimetype="application/json")
