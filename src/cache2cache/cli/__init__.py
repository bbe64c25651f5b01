"""The `c2c` command line: one module per verb, each wrapping one public function."""
