"""Detection building blocks shared by teachers and students.

anchors      multi-level RetinaNet / SSD-FPN anchors and their layout
box_coder    Faster R-CNN box encoding against anchors; box-side distances (distribution heads)
matcher      IoU matching of anchors to ground truth and training targets
losses       focal classification loss, Huber / GIoU box losses, GFL's DFL, the detection loss
postprocess  decoding, top-k and TensorFlow NMS into final detections
"""
