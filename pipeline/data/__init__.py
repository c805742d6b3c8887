"""Manifests, their checks and splits, the built-in synthetic suite, and importers of real corpora."""
