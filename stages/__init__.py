"""DVC stage scripts, one per stage, each run as `python -m stages.<name> <dataset key>`."""
