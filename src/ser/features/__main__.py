"""`python -m ser.features`: compute (or verify cached) features for every manifest file, or
for one shard of them (`features.shard=I/N`, one of N processes that fill the cache together)."""

from __future__ import annotations

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from ser.config import to_dict
from ser.data.manifest import load_folds
from ser.errors import exit_on_user_error
from ser.features import FeatureCache, extract_corpus
from ser.features.shard import parse_shard, shard_files
from ser.project import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="extract")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    shard = parse_shard(cfg.features.get("shard"))  # a bad value fails before any work
    manifest = load_folds(cfg)[0]  # every fold holds every file
    paths = [str(path) for path in manifest["path"]]
    if shard is not None:
        index, count = shard
        everything = len(set(paths))
        paths = shard_files(paths, index, count)
        print(
            f"shard {index}/{count}: {len(paths)} of {everything} files (positions {index}, "
            f"{index + count}, {index + 2 * count}, ... of the manifest sorted by path); "
            "the other shards extract the rest"
        )
    result = extract_corpus(
        paths,
        instantiate(cfg.preprocess),
        instantiate(cfg.features.extractor),
        to_dict(cfg.features.extractor),
        FeatureCache(cfg.paths.feature_cache_dir),
        n_jobs=cfg.features.get("n_jobs", -1),
    )
    done = len(paths) - len(result.skipped)
    print(
        f"{done} of {len(paths)} files have {cfg.features.name} features in "
        f"{cfg.paths.feature_cache_dir} ({result.cache_hits} were cached already)"
    )
    for path, reason in result.skipped.items():
        print(f"  skipped {path}: {reason}")


if __name__ == "__main__":
    main()
