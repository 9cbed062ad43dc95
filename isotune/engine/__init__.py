"""One rank's world: weights, layers, the sharded model, process groups, the executor that runs
the ISO schedule, and the timing protocol."""
