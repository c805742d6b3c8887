"""Fuse speech foundation models: cache every hidden layer once (stage one), train fusion interfaces and task heads on the cache (stage two). The command is `pipeline`; see README.md."""
