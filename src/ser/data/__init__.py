"""Corpora (one module each), the manifest, speaker-independent splits, the datamodule."""
