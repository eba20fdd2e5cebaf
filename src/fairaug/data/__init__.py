"""Data sets: fixtures, readers, validation, splits and the manifest."""
