"""`pefomed export` (placeholder until the export module lands)."""


def register(app) -> None:
    pass
