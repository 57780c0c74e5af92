"""Operating sagaloom: logging, metrics, telemetry, the codec server, a small HTTP server helper.

Internal: no public API. Imports nothing else of sagaloom, so every folder may use it.
"""
