"""Gust's Python runtime, as Lambda's Python runtimes behave.

The runtime itself is the module _gust_runtime: Python compiles a script it runs on every start,
but uses the compiled form of a module it imports, which Gust writes when it installs the
runtime (`__pycache__`, one per interpreter version).
"""

import _gust_runtime

_gust_runtime.start()
