"""Data: video/audio decoding, DISCO-MV shards, curation (`vmas prepare`), demo data, DataModule."""
