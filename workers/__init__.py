"""Job functions run by ``c360 worker`` (or in-process in embedded mode)."""
