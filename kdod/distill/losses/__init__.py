"""Distillation losses, registered in kdod.LOSSES (see kdod/distill/distiller.py for the protocol).

    kl_logits            KL between temperature-softened class outputs (Hinton et al. 2015)
    feature_imitation    L2 on adapted neck features, optional masks (Wang et al. CVPR 2019)
    bounded_regression   teacher-bounded box regression (Chen et al. NeurIPS 2017)
    box_imitation        L1 / GIoU to the teacher's decoded boxes where it is confident
    pseudo_labels        teacher detections as extra targets (works across anchor layouts)
    cwd                  KL between per-channel spatial softmaxes of neck features (Shu et al.
                         ICCV 2021)
    fgd                  focal (box masks, attention) and global (GcBlock) feature imitation
                         (Yang et al. CVPR 2022)
    mgd                  a generator rebuilds the teacher's features from randomly masked
                         student features (Yang et al. ECCV 2022)
    dist                 Pearson relations of class probabilities across anchors and classes
                         (Huang et al. NeurIPS 2022)
    ld                   KL between the box-side distributions of GFL-style box heads, on the
                         positives and the valuable localization region (Zheng et al. CVPR 2022)
"""

# Importing the modules registers their losses.
from kdod.distill.losses import (  # noqa: F401
    box,
    cwd,
    dist,
    feature,
    fgd,
    kl,
    ld,
    mgd,
    pseudo_labels,
)
