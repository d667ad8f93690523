"""Sharded extraction (`python -m ser.features features.shard=I/N`): the shards partition the
files, N processes through Hydra's submitit launcher fill the same cache as one process, a
crashed shard loses nothing and a rerun extracts only what is missing, bad values are one line."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

from ser.errors import SerError
from ser.features import FeatureCache
from ser.features.__main__ import main
from ser.features.shard import parse_shard, shard_files
from ser.project import CONFIG_DIR

# The small synthetic corpus (conftest.SMALL_CORPUS): 8 speakers x 4 emotions x 4 utterances.
FILES = 128


def cache_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_shards_partition_the_files_whatever_their_order() -> None:
    paths = [f"/corpus/spk{s:02d}/utt{u:03d}.wav" for s in range(7) for u in range(13)]
    shuffled = random.Random(0).sample(paths, len(paths)) + paths[:5]  # repeats count once
    for count in (1, 2, 3, 4, 91, 200):
        shards = [shard_files(shuffled, index, count) for index in range(count)]
        assert shards == [shard_files(paths, index, count) for index in range(count)]
        flat = [path for shard in shards for path in shard]
        assert sorted(flat) == sorted(paths)  # every file in exactly one shard
        assert max(map(len, shards)) - min(map(len, shards)) <= 1  # even work
    assert shard_files(paths, 1, 2) == sorted(paths)[1::2]


@pytest.mark.parametrize("value", ["0/1", "1/2", " 3 / 4 ", "7/8"])
def test_a_shard_is_i_of_n(value: str) -> None:
    index, count = parse_shard(value)  # type: ignore[misc]
    assert f"{index}/{count}" == value.replace(" ", "")
    assert parse_shard(None) is None


@pytest.mark.parametrize("value", ["3/2", "2/2", "a/b", "0/0", "-1/2", "1", 1, "1/2/3", ""])
def test_a_bad_shard_names_the_fix(value: object) -> None:
    with pytest.raises(SerError, match=r"features\.shard=.* is not valid: it takes I/N") as err:
        parse_shard(value)
    assert "features.shard=0/2" in str(err.value) and "\n" not in str(err.value)


def test_every_feature_set_takes_a_shard_and_training_has_none(compose) -> None:
    names = sorted(p.stem for p in (Path(CONFIG_DIR) / "features").glob("*.yaml"))
    assert {"compare", "logmel", "mfcc"} <= set(names)
    for name in names:
        cfg = compose([f"features={name}", "features.shard=1/4"], "extract")
        assert parse_shard(cfg.features.shard) == (1, 4)
        assert "shard" not in compose([f"features={name}"]).features


def test_a_bad_shard_is_one_error_line_before_any_work(tmp_path: Path, cli, python) -> None:
    result = cli(
        [python, "-m", "ser.features", "features.shard=3/2", f"paths.root_dir={tmp_path}"],
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: features.shard='3/2' is not valid: it takes I/N, shard I (from 0) of N with "
        "0 <= I < N, e.g. features.shard=0/2 and features.shard=1/2 for two workers, "
        "or null for every file"
    )
    assert not (tmp_path / "data").exists()  # no corpus made, nothing extracted


def test_a_crashed_shard_loses_nothing_and_a_rerun_extracts_only_what_is_missing(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    settings = ["features=mfcc", "features.n_jobs=1", f"paths.feature_cache_dir={cache}"]
    main(make_cfg([*settings, "features.shard=0/2"], "extract"))
    out = capsys.readouterr().out
    assert f"shard 0/2: {FILES // 2} of {FILES} files (positions 0, 2, 4, ..." in out
    assert f"{FILES // 2} of {FILES // 2} files have mfcc features in {cache} (0 were" in out
    assert len(cache_files(cache)) == FILES // 2

    # Shard 1/2 dies after writing 5 entries (the process killed between two files).
    put, written = FeatureCache.put, list[str]()

    def dying_put(self: FeatureCache, key: str, array: object) -> None:
        if len(written) == 5:
            raise KeyboardInterrupt("killed")
        put(self, key, array)  # type: ignore[arg-type]
        written.append(key)

    monkeypatch.setattr(FeatureCache, "put", dying_put)
    with pytest.raises(KeyboardInterrupt):
        main(make_cfg([*settings, "features.shard=1/2"], "extract"))
    monkeypatch.undo()
    assert len(cache_files(cache)) == FILES // 2 + 5  # the other shard's and its own, whole

    # A full run (or the crashed shard again) extracts the rest only.
    main(make_cfg(settings, "extract"))
    out = capsys.readouterr().out
    hits = FILES // 2 + 5
    assert f"{FILES} of {FILES} files have mfcc features in {cache} ({hits} were cached" in out
    assert len(cache_files(cache)) == FILES


@pytest.mark.slow
def test_two_shards_through_submitit_fill_the_cache_of_one_process(
    tmp_path: Path, data_dir: Path, cli, python, small_corpus: list[str]
) -> None:
    command = [python, "-m", "ser.features"]
    common = [
        f"paths.root_dir={tmp_path}", f"paths.data_dir={data_dir}", *small_corpus,
        "features=mfcc", "features.n_jobs=1",
    ]  # fmt: skip
    one, two = tmp_path / "one", tmp_path / "two"
    single = cli([*command, *common, f"paths.feature_cache_dir={one}"], cwd=tmp_path, timeout=300)
    assert single.returncode == 0, single.stderr[-3000:]
    assert f"{FILES} of {FILES} files have mfcc features" in single.stdout
    sweep = cli(
        [*command, "-m", "hydra/launcher=submitit_local", "features.shard=0/2,1/2",
         *common, f"paths.feature_cache_dir={two}"],
        cwd=tmp_path,
        timeout=300,
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    # Each shard ran in a process of its own (its submitit log) on half of the files.
    logs = sorted(tmp_path.glob("logs/features/multiruns/*/.submitit/*/*_log.out"))
    assert len(logs) == 2
    texts = "\n".join(log.read_text() for log in logs)
    for index in (0, 1):
        assert f"shard {index}/2: {FILES // 2} of {FILES} files" in texts
    assert texts.count(f"{FILES // 2} of {FILES // 2} files have mfcc features") == 2
    expected = cache_files(one)
    assert len(expected) == FILES
    assert cache_files(two) == expected  # the same names, the same bytes


def test_bench_scale_checks_its_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    scripts = Path(__file__).resolve().parents[2] / "scripts"
    sys.path.insert(0, str(scripts))  # bench_scale imports bench_features
    try:
        spec = importlib.util.spec_from_file_location("bench_scale", scripts / "bench_scale.py")
        assert spec is not None and spec.loader is not None
        bench = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(bench)
    finally:
        sys.path.remove(str(scripts))
    for argv, complaint in [
        (["--workers", "1"], "--workers 1: give 2 or more"),
        (["--limit", "1"], "--limit 1: give at least --workers (2) files"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            bench.main(argv)
        assert exit_info.value.code == 2
        assert complaint in capsys.readouterr().err
