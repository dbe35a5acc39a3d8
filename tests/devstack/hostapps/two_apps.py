"""Two FunctionApps in one module: the worker refuses to pick one, so does the dev host."""

import azure.functions as func

app = func.FunctionApp()
other = func.FunctionApp()
