"""`python -m ser.prepare`: build the speaker-independent manifest and write it as CSV."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from ser.data.manifest import build_manifest, write_manifest
from ser.errors import exit_on_user_error
from ser.project import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="prepare")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    manifest = build_manifest(cfg)
    path = write_manifest(manifest, cfg.manifest_out)
    counts = manifest.groupby("split")["speaker"].agg(["nunique", "size"])
    print(f"Wrote {path} ({len(manifest)} utterances)")
    for split, row in counts.iterrows():
        print(f"  {split}: {row['size']} utterances from {row['nunique']} speakers")


if __name__ == "__main__":
    main()
