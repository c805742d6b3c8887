"""The stages: stage one (extract), stage two (train, pack, grid), the layer analysis, the report, and the DVC glue that runs them from params.yaml."""
