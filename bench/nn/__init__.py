"""The deep-learning engine: trainer, survival heads and losses, the shared image-method base class.

Imports torch and MONAI; ``bench`` itself and ``bench.metrics`` do not need it.
"""
from bench.nn.losses import CoxHead, DiscreteHead, cox_loss, make_head, segmentation_loss
from bench.nn.method import ImageSurvivalMethod, width
from bench.nn.trainer import BalancedBatchSampler, Trainer, TrainConfig

__all__ = ["BalancedBatchSampler", "CoxHead", "DiscreteHead", "ImageSurvivalMethod", "Trainer", "TrainConfig",
           "cox_loss", "make_head", "segmentation_loss", "width"]
