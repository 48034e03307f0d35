"""Data: records, readers, splits, windows and shards."""
