"""Pure Python, never imports torch: model shapes, shard math, chunking, the ISO schedule, the
cost model, profiles, plans, the search space, statistics, errors and file I/O."""
