"""Evaluation metrics: COCO detection metrics (pycocotools) and plate-text metrics."""
