"""Distillation losses, registered in kdod.LOSSES (see kdod/distill/distiller.py for the protocol).

    kl_logits            KL between temperature-softened class outputs (Hinton et al. 2015)
    feature_imitation    L2 on adapted neck features, optional masks (Wang et al. CVPR 2019)
    bounded_regression   teacher-bounded box regression (Chen et al. NeurIPS 2017)
    box_imitation        L1 / GIoU to the teacher's decoded boxes where it is confident
    pseudo_labels        teacher detections as extra targets (works across anchor layouts)
"""

from kdod.distill.losses import box, feature, kl, pseudo_labels  # noqa: F401  Registers them.
