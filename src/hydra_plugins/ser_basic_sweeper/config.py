"""The `hydra/sweeper: ser_basic` config, registered in Hydra's config store on plugin scan."""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module before it is in
# sys.modules, where dataclasses would look up string annotations.

from dataclasses import dataclass, field

from hydra.core.config_store import ConfigStore


@dataclass
class BasicSweeperConf:
    """Settings of `hydra.sweeper`, those of Hydra's basic sweeper."""

    _target_: str = "hydra_plugins.ser_basic_sweeper.sweeper.SerBasicSweeper"
    # Jobs handed to the launcher at once (null: all of them, one batch).
    max_batch_size: int | None = None
    # Fixed or swept overrides added to the command line's, e.g. {model: "mlp,cnn"}.
    params: dict[str, str] | None = field(default=None)


ConfigStore.instance().store(
    group="hydra/sweeper", name="ser_basic", node=BasicSweeperConf, provider="ser"
)
