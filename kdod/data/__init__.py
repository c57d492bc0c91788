"""Data: the input pipeline (pipeline.py, augment.py). The synthetic plate renderer lives beside
its TFDS builder, in tfds_builders/synthetic_plates/. Nothing is imported here."""
