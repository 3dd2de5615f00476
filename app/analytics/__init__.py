"""Shop analytics as pure functions over DataFrames (STYLE §15).

``loaders`` turns SQL into DataFrames; every other module here takes
DataFrames and returns DataFrames or Series, validates its inputs first
and raises ``ValidationFailed`` on a bad frame. Nothing here touches the
session or Flask, so the same code runs in the worker, the CLI and tests.
"""
