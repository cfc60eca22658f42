"""failcast command line."""
