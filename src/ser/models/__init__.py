"""Models: the nets, the one LightningModule that trains them, checkpoint loading."""

from ser.models.module import SERModule, load_checkpoint

__all__ = ["SERModule", "load_checkpoint"]
