"""Developer tools of the repository (not installed with taskgram): ``python tools/import_graph.py``."""
