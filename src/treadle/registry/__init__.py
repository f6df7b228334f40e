"""The model registry: versions with lineage, aliases with their full serving history (``models``: the
tables; ``registry``: the operations; ``command``: ``treadle registry list|show|promote|rollback``)."""
