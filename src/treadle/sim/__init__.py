"""Fleet simulator: the real scheduler, KV cache, routing policies and autoscaler on simulated time."""
