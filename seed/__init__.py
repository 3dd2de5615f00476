"""Demo data for the console."""
