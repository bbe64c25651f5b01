"""`c2c demo`: an offline world where knowledge crosses the cache (see README)."""
