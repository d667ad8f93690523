"""The one LightningModule: any net, class-weighted cross-entropy, UAR/WA/F1 per stage."""

from __future__ import annotations

import copy
import inspect
import pickle
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn
from torchmetrics import MaxMetric, MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from ser.errors import SerError
from ser.features.functionals import time_mask
from ser.models.halting import HaltingPolicy, build_halting
from ser.models.nets import upgrade_net_config
from ser.models.nets.causal import running_mean

# A padded batch as ser.data's collate makes it: features (B, T, D), lengths (B,), labels (B,).
Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]

CONFIG_KEY = "ser_config"
# The speakers a checkpoint was trained on, so that reusing it can refuse to score them.
TRAIN_SPEAKERS_KEY = "ser_train_speakers"


def classification_metrics(num_classes: int) -> MetricCollection:
    """UAR (unweighted average recall = balanced accuracy), WA (accuracy) and macro-F1."""
    return MetricCollection(
        {
            "uar": MulticlassAccuracy(num_classes, average="macro"),
            "wa": MulticlassAccuracy(num_classes, average="micro"),
            "f1": MulticlassF1Score(num_classes, average="macro"),
        }
    )


class _StreamingNet(Protocol):
    """A net with `causal` set (checked in SERModule.__init__): logits after every frame."""

    def prefix_logits(self, x: torch.Tensor) -> torch.Tensor: ...


class _CausalFrameNet(Protocol):
    """A causal net's per-frame logits and LSTM outputs (ser.models.nets.causal)."""

    def frame_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]: ...


class SERModule(pl.LightningModule):
    """Normalises features with training statistics, runs the injected net, and scores it."""

    # Buffers registered in __init__ (declared for type checkers: Module.__getattr__ is untyped).
    class_weights: torch.Tensor
    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(
        self,
        net: nn.Module,
        class_names: Sequence[str],
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        scheduler: Callable[..., Any] | None = None,
        class_weights: torch.Tensor | None = None,
        feature_mean: torch.Tensor | None = None,
        feature_std: torch.Tensor | None = None,
        name: str | None = None,
        prefix_loss_weight: float = 0.0,
        halting: HaltingPolicy | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            ignore=[
                "net",
                "halting",
                "optimizer",
                "scheduler",
                "class_weights",
                "feature_mean",
                "feature_std",
            ],
            logger=False,
        )
        self.net = net
        if not 0.0 <= prefix_loss_weight <= 1.0:
            raise SerError(f"model.prefix_loss_weight={prefix_loss_weight} must be in [0, 1]")
        if prefix_loss_weight and not getattr(net, "causal", False):
            raise SerError(
                "model.prefix_loss_weight needs a streaming classifier; add model.causal=true"
            )
        self.prefix_loss_weight = prefix_loss_weight
        if halting is not None and not getattr(net, "causal", False):
            raise SerError("a halting policy needs a streaming classifier; add model.causal=true")
        # The second Emo-RL design: a stopping policy trained with the classifier (rl=joint).
        self.halting = halting
        self.class_names = list(class_names)
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        n = len(self.class_names)
        self.register_buffer("class_weights", _or(class_weights, torch.ones(n)))
        dim = feature_mean.numel() if feature_mean is not None else 1
        self.register_buffer("feature_mean", _or(feature_mean, torch.zeros(dim)))
        self.register_buffer("feature_std", _or(feature_std, torch.ones(dim)))
        self.metrics = nn.ModuleDict(
            # Keyed "<stage>_metrics": a key "train" would shadow nn.Module.train().
            {f"{stage}_metrics": classification_metrics(n) for stage in ("train", "val", "test")}
        )
        self.mean_losses = nn.ModuleDict(
            {f"{stage}_loss": MeanMetric() for stage in ("train", "val", "test")}
        )
        self.val_uar_best = MaxMetric()
        if halting is not None:  # UAR at the policy's stop, share heard, episode return
            self.halting_metrics = nn.ModuleDict(
                {
                    f"{stage}_{name}": metric
                    for stage in ("train", "val", "test")
                    for name, metric in (
                        ("uar", MulticlassAccuracy(n, average="macro")),
                        ("fraction", MeanMetric()),
                        ("return", MeanMetric()),
                    )
                }
            )
        # Per-epoch train/val loss and metrics, for the learning-curve plot (any logger).
        self.history: dict[str, list[float]] = defaultdict(list)
        # (predictions, targets, posteriors) per test batch
        self.test_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        # The resolved run config, stored in checkpoints so that they rebuild themselves.
        self.run_config: dict | None = None
        self.train_speakers: list[str] | None = None

    def _stage_metrics(self, stage: str) -> tuple[MetricCollection, MeanMetric]:
        """The metrics and the mean loss of a stage (ModuleDict items are typed as Module)."""
        return (
            cast(MetricCollection, self.metrics[f"{stage}_metrics"]),
            cast(MeanMetric, self.mean_losses[f"{stage}_loss"]),
        )

    def normalise(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        mask = time_mask(lengths, x.shape[1]).unsqueeze(-1)
        # Padding stays exactly zero after normalisation.
        return ((x - self.feature_mean) / self.feature_std) * mask

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalise(x, lengths), lengths)

    def _step(self, batch: Batch, stage: str) -> torch.Tensor:
        if self.halting is not None:
            return self._halting_step(batch, stage)
        x, lengths, y = batch
        prefix_loss = None
        if stage == "train" and self.prefix_loss_weight:
            logits, prefix_loss = self._logits_and_prefix_loss(x, lengths, y)
        else:
            logits = self(x, lengths)
        loss = nn.functional.cross_entropy(logits, y, weight=self.class_weights)
        if prefix_loss is not None:
            loss = (1 - self.prefix_loss_weight) * loss + self.prefix_loss_weight * prefix_loss
        self._record(stage, logits, y, loss)
        return loss

    def _record(
        self, stage: str, logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor
    ) -> None:
        """Update a stage's metrics and mean loss (and keep test outputs) with one batch."""
        preds = logits.argmax(dim=-1)
        metrics, mean_loss = self._stage_metrics(stage)
        metrics.update(preds, y)
        mean_loss.update(loss.detach(), weight=len(y))
        if stage == "test":
            posteriors = logits.detach().float().softmax(dim=-1)
            self.test_outputs.append((preds.cpu(), y.cpu(), posteriors.cpu()))

    def _logits_and_prefix_loss(
        self, x: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The utterance logits and the class-weighted cross-entropy of the running posterior
        after every frame, averaged over each utterance's frames: it trains a streaming
        classifier to be right early, not only at the end. One pass of the net gives both."""
        net = cast(_StreamingNet, self.net)  # prefix_loss_weight needs a causal net
        prefix = net.prefix_logits(self.normalise(x, lengths))  # (B, T, C)
        return self._utterance_logits(prefix, lengths), self._prefix_loss(prefix, lengths, y)

    @staticmethod
    def _utterance_logits(prefix: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The running posterior logits (B, T, C) at each utterance's last real frame."""
        last = (lengths - 1).clamp_min(0)
        return prefix[torch.arange(len(lengths), device=prefix.device), last]

    def _prefix_loss(
        self, prefix: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        frame_loss = nn.functional.cross_entropy(
            prefix.transpose(1, 2), y.unsqueeze(1).expand(-1, prefix.shape[1]), reduction="none"
        )
        mask = time_mask(lengths, prefix.shape[1]).to(frame_loss.dtype)
        per_utterance = (frame_loss * mask).sum(dim=1) / lengths.clamp_min(1)
        weights = self.class_weights[y]
        return (weights * per_utterance).sum() / weights.sum()

    def _halting_step(self, batch: Batch, stage: str) -> torch.Tensor:
        """The joint objective (rl=joint): one episode per utterance, stops sampled from the
        policy in training (deterministic elsewhere); cross-entropy at the stop (the whole
        utterance during the policy's warm-up), REINFORCE for the policy, a regression for
        its baseline, and `prefix_loss_weight` of the every-prefix loss."""
        assert self.halting is not None
        x, lengths, y = batch
        net = cast(_CausalFrameNet, self.net)
        frame_logits, hidden, _ = net.frame_outputs(self.normalise(x, lengths))
        prefix = running_mean(frame_logits)
        logits = self._utterance_logits(prefix, lengths)
        training = stage == "train"
        episodes = self.halting.episodes(prefix, hidden, lengths, y, sample=training)
        weight = self.class_weights
        if training:
            warm = self.current_epoch < self.halting.warmup_epochs
            at_stop = logits if warm else episodes.logits_at_stop
            loss = nn.functional.cross_entropy(at_stop, y, weight=weight)
            if self.prefix_loss_weight:
                w = self.prefix_loss_weight
                loss = (1 - w) * loss + w * self._prefix_loss(prefix, lengths, y)
            loss = loss + episodes.baseline_loss + (0.0 if warm else episodes.policy_loss)
        else:
            loss = nn.functional.cross_entropy(logits, y, weight=weight)
        self._record(stage, logits, y, loss)
        metrics = self.halting_metrics
        cast(MulticlassAccuracy, metrics[f"{stage}_uar"]).update(
            episodes.logits_at_stop.argmax(dim=-1), y
        )
        cast(MeanMetric, metrics[f"{stage}_fraction"]).update(episodes.fraction.detach())
        cast(MeanMetric, metrics[f"{stage}_return"]).update(episodes.returns.detach())
        return loss

    def _log_epoch(self, stage: str) -> None:
        metrics, mean_loss = self._stage_metrics(stage)
        values = {**metrics.compute(), "loss": mean_loss.compute()}
        metrics.reset()
        mean_loss.reset()
        if self.halting is not None:
            for name in ("uar", "fraction", "return"):
                metric = self.halting_metrics[f"{stage}_{name}"]
                values[f"halt_{name}"] = metric.compute()  # type: ignore[operator]
                metric.reset()  # type: ignore[operator]
        for key, value in values.items():
            # torchmetrics has already summed every process's counts, so each value is the
            # whole split's; sync_dist only averages identical copies (and tells Lightning so).
            # On the bar: the training loss and validation UAR (all are logged to MLflow).
            shown = (stage, key) in (("train", "loss"), ("val", "uar"))
            self.log(f"{stage}/{key}", value, prog_bar=shown, sync_dist=True)
            if stage != "test" and not self.trainer.sanity_checking:
                self.history[f"{stage}/{key}"].append(float(value))
        if stage == "val" and not self.trainer.sanity_checking:
            self.val_uar_best.update(values["uar"])
            self.log("val/uar_best", self.val_uar_best.compute(), prog_bar=True, sync_dist=True)

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")

    def on_test_epoch_start(self) -> None:
        self.test_outputs.clear()

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")
        if self.trainer.world_size > 1 and torch.distributed.is_initialized():
            # Each process tested one contiguous shard of the test set (ShardSampler): in rank
            # order, the shards are the whole set, every utterance once, in dataset order.
            shards: list[Any] = [None] * self.trainer.world_size
            torch.distributed.all_gather_object(shards, self.test_outputs)
            self.test_outputs = [batch for shard in shards for batch in shard]

    def test_predictions(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(predictions, targets, posteriors) of the last test run, over the whole test set in
        every process."""
        preds, targets, posteriors = zip(*self.test_outputs, strict=True)
        return torch.cat(preds), torch.cat(targets), torch.cat(posteriors)

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            raise SerError("this model was loaded for inference; it has no optimizer to train with")
        optimizer = self.optimizer_factory(params=self._parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        if _is_per_step(self.scheduler_factory):
            # A per-step schedule over the whole run (e.g. OneCycleLR): unless the config fixes
            # it, its length comes from the trainer (max_epochs x batches).
            steps = {}
            if "total_steps" not in getattr(self.scheduler_factory, "keywords", {}):
                steps["total_steps"] = int(self.trainer.estimated_stepping_batches)
            scheduler = self.scheduler_factory(optimizer=optimizer, **steps)
            return {
                "optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
            }
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": self.scheduler_factory(optimizer=optimizer),
                "monitor": "val/uar",
                "interval": "epoch",
            },
        }

    def _parameter_groups(self) -> Any:
        """All parameters, or the net's groups with their learning-rate scales applied (a
        fine-tuned encoder learns slower than its head)."""
        groups = getattr(self.net, "parameter_groups", None)
        if not callable(groups):
            return self.parameters()
        lr = getattr(self.optimizer_factory, "keywords", {}).get("lr")
        out = []
        for group in groups():
            group = dict(group)
            scale = group.pop("lr_scale", 1.0)
            if lr is not None:
                group["lr"] = lr * scale
            out.append(group)
        return out

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CONFIG_KEY] = self.run_config
        checkpoint[TRAIN_SPEAKERS_KEY] = self.train_speakers


def _is_per_step(factory: Callable[..., Any]) -> bool:
    """Whether a scheduler factory (a functools.partial from Hydra) builds a schedule over the
    run's steps (it takes `total_steps`), stepped every batch rather than every epoch."""
    target = getattr(factory, "func", factory)
    try:
        return "total_steps" in inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False


def _or(value: torch.Tensor | None, default: torch.Tensor) -> torch.Tensor:
    return default if value is None else torch.as_tensor(value, dtype=torch.float32)


# What a checkpoint written by an older ser, or by hand, needs to load safely again.
CONVERT_HINT = "python -m ser.models.checkpoint convert {path} <new.ckpt>"


# Config keys that name a pretrained speech encoder's folder or hub id (features=ssl,
# model=ssl_finetune): the checkpoint records where the encoder is, not its weights.
ENCODER_KEYS = (("features", "extractor", "model"), ("model", "net", "model"))


def encoder_of(cfg: dict) -> tuple[str, str] | None:
    """(config key, folder or hub id) of the pretrained encoder a run config uses, if any."""
    for keys in ENCODER_KEYS:
        node: Any = cfg
        for key in keys:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, str):
            return ".".join(keys), node
    return None


def with_encoder(cfg: dict, folder: str | Path) -> dict:
    """The run config with its pretrained encoder read from `folder` (a bundled copy)."""
    found = encoder_of(cfg)
    if found is None:
        return cfg
    *parents, last = found[0].split(".")
    out = copy.deepcopy(cfg)
    node = out
    for key in parents:
        node = node[key]
    node[last] = str(folder)
    return out


def load_checkpoint(
    path: str | Path, map_location: str = "cpu", encoder: str | Path | None = None
) -> tuple[SERModule, dict]:
    """Rebuild a trained SERModule (net, normalisation, labels) and its run config from a .ckpt.

    `encoder` is a folder that replaces the pretrained encoder the run config names (a copy
    bundled with a registered model, say).

    Loaded with `weights_only=True`: tensors and plain containers only, so a checkpoint from a
    registry or from someone else cannot run code on load. One that holds pickled objects is
    refused with the command that converts it (for a file you trust).
    """
    path = Path(path)
    if not path.is_file():
        raise SerError(f"checkpoint {path} not found; train one with `python train.py`")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, EOFError, RuntimeError, ValueError) as err:
        # torch names the class or function a pickled object would rebuild; anything else is
        # bytes that are no checkpoint.
        if isinstance(err, pickle.UnpicklingError) and "Unsupported global" in str(err):
            raise SerError(
                f"{path} holds pickled Python objects, which could run code when loaded, so "
                f"ser does not load it; if you trust its source, convert it with "
                f"`{CONVERT_HINT.format(path=path)}`"
            ) from None
        raise SerError(
            f"{path} is not a readable checkpoint ({type(err).__name__}); give a .ckpt saved "
            "by `python train.py`"
        ) from None
    cfg = ckpt.get(CONFIG_KEY) if isinstance(ckpt, dict) else None
    if cfg is None:
        raise SerError(f"{path} is not a ser checkpoint (no stored config); retrain with ser")
    if encoder is not None:
        cfg = with_encoder(cfg, encoder)
    state = ckpt["state_dict"]
    class_names = ckpt["hyper_parameters"]["class_names"]
    net = instantiate(
        OmegaConf.create(upgrade_net_config(cfg["model"]["net"])),
        input_dim=state["feature_mean"].numel(),
        num_classes=len(class_names),
    )
    halting_settings = cfg["model"].get("halting")
    halting = None
    if halting_settings and "halting.frame_rate" in state:
        rate = float(state["halting.frame_rate"])
        halting = build_halting(halting_settings, net, len(class_names), rate)
    module = SERModule(
        net,
        class_names,
        class_weights=state["class_weights"],
        feature_mean=state["feature_mean"],
        feature_std=state["feature_std"],
        name=ckpt["hyper_parameters"].get("name"),
        halting=halting,
    )
    module.load_state_dict(state)
    module.run_config = cfg
    module.train_speakers = ckpt.get(TRAIN_SPEAKERS_KEY)  # None in checkpoints from before
    return module.eval(), cfg
