"""One blueprint per screen, plus ``webhooks`` and ``api``."""
