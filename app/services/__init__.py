"""Domain services: plain functions over the session, no Flask request objects."""
