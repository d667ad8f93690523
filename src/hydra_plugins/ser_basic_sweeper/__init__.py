"""ser's default Hydra sweeper (`hydra/sweeper: ser_basic`): Hydra's basic sweeper (every
combination of the swept values, in batches through the launcher), except that a failed job
does not stop the sweep. Each job that fails is reported; the sweep runs every job, then names
the failures in one summary and exits with status 1. Hydra finds it by scanning the
`hydra_plugins` namespace package."""
