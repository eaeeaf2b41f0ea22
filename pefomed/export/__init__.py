"""`pefomed export`: a RUN_DIR as a folder other tools load without pefomed (a stage beside infer)."""
