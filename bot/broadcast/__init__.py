"""Broadcasts: an editor sends an issue, and every subscriber gets it once, at the platforms' limits.

control.py    the editor's operations (send, pause, resume, cancel, status, test send)
audience.py   who gets the issue (topics, WeChat's 48 h window)
payloads.py   each issue rendered once per channel, tracking links remembered
worker.py     claims deliveries from the ledger (storage/deliveries.py), sends, records
recorder.py   results written by group commit, each awaited before the delivery goes on
runtime.py    builds a worker from the settings (`jianbao worker`, `serve`)
routes.py     POST /api/broadcasts, GET /api/broadcasts/{id} (admin token)
cli.py        `jianbao broadcast ...` and `jianbao worker`
"""
