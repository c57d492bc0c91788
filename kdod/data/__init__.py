"""Data: the input pipeline (pipeline.py, augment.py) and the synthetic plate renderer
(synthetic.py). Nothing is imported here, so the renderer stays free of TensorFlow."""
