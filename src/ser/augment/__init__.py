"""Waveform augmentation for the training split. Pipelines are audiomentations objects built
from conf/augmentation by Hydra; they run on the fly inside ser.data.datamodule.AugmentedDataset."""
