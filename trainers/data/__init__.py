"""Data sets: layout parsers, decoding, caching and batching."""
