"""`python -m ser.features`: compute (or verify cached) features for every manifest file."""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from ser.config import to_dict
from ser.data.manifest import load_folds
from ser.errors import exit_on_user_error
from ser.features import FeatureCache, extract_corpus
from ser.project import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="extract")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    manifest = load_folds(cfg)[0]  # every fold holds every file
    result = extract_corpus(
        list(manifest["path"]),
        instantiate(cfg.preprocess),
        instantiate(cfg.features.extractor),
        to_dict(cfg.features.extractor),
        FeatureCache(cfg.paths.feature_cache_dir),
        n_jobs=cfg.features.get("n_jobs", -1),
    )
    done = len(manifest) - len(result.skipped)
    print(
        f"{done} of {len(manifest)} files have {cfg.features.name} features in "
        f"{cfg.paths.feature_cache_dir} ({result.cache_hits} were cached already)"
    )
    for path, reason in result.skipped.items():
        print(f"  skipped {path}: {reason}")


if __name__ == "__main__":
    main()
