"""The Typer command-line app (installed as pefomed.cli). It parses arguments and calls the library."""
