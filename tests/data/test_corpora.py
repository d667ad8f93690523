"""The corpus loaders (CREMA-D, TESS, EmoDB, SAVEE, IEMOCAP, folder, csv) on tiny fixtures in
each corpus's real layout, and every conf/dataset option instantiated through Hydra on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ser.data import cremad, emodb, folder, iemocap, savee, table, tess
from ser.errors import SerError

CONF = Path(__file__).resolve().parents[2] / "conf" / "dataset"
TONE = 0.1 * np.sin(np.arange(1600) / 5.0)


def wav(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, TONE, 16000)


def make_cremad(root: Path) -> None:
    for name in ("1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TIE_NEU_XX", "1091_ITS_SAD_LO"):
        wav(root / "AudioWAV" / f"{name}.wav")
    (root / "AudioWAV" / "notes.txt").write_text("stray")
    (root / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
        "1002,21,Female,Caucasian,Not Hispanic\n"
    )


def make_tess(root: Path) -> None:
    wav(root / "OAF_angry" / "OAF_back_angry.wav")
    wav(root / "OAF_Fear" / "OAF_bar_fear.wav")
    wav(root / "OAF_Pleasant_surprise" / "OAF_base_ps.wav")
    wav(root / "YAF_pleasant_surprised" / "YAF_bath_pleasant_surprised.wav")
    wav(root / "YAF_sad" / "YAF_bean_sad.wav")
    (root / "desktop.ini").write_text("stray")


def make_emodb(root: Path) -> None:
    for name in ("03a01Fa", "03a02Wb", "08b10Lc", "16a07Tb"):
        wav(root / "wav" / f"{name}.wav")
    wav(root / "wav" / "99a01Fa.wav")  # no such speaker
    (root / "lablaut").mkdir()
    (root / "lablaut" / "03a01Fa.lab").write_text("not audio, outside wav/")


def make_savee(root: Path) -> None:
    for speaker, names in {"DC": ("a01", "sa01"), "JE": ("su02", "n30"), "KL": ("d15",)}.items():
        for name in names:
            wav(root / "AudioData" / speaker / f"{name}.wav")
    (root / "AudioData" / "DC" / "Info.txt").write_text("stray")


EVALUATION = """% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]

[6.2901 - 8.2357]\t{d}_F000\tneu\t[2.5000, 2.5000, 2.5000]
C-E2:\tNeutral;\t()

[10.0100 - 11.3925]\t{d}_M000\t{m}\t[2.0000, 3.5000, 3.5000]
[14.8872 - 18.0175]\t{d}_F001\txxx\t[2.5000, 3.5000, 3.0000]
"""


def make_iemocap(root: Path) -> None:
    dialogs = {1: ("Ses01F_impro01", "exc"), 2: ("Ses02M_script01_1", "ang")}
    for session, (dialog, emotion) in dialogs.items():
        base = root / f"Session{session}"
        evaluation = base / "dialog" / "EmoEvaluation" / f"{dialog}.txt"
        evaluation.parent.mkdir(parents=True)
        evaluation.write_text(EVALUATION.format(d=dialog, m=emotion))
        (evaluation.parent / "Categorical").mkdir()  # per-annotator files, not read
        for who in ("F000", "M000", "F001"):
            wav(base / "sentences" / "wav" / dialog / f"{dialog}_{who}.wav")
    transcript = root / "Session1" / "dialog" / "transcriptions" / "Ses01F_impro01.txt"
    transcript.parent.mkdir(parents=True)
    transcript.write_text(
        "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.\n"
        "Ses01F_impro01_M000 [010.0100-011.3925]: Do you have your forms?\n"
    )
    (root / "Session1" / "sentences" / "wav" / "Ses01F_impro01" / "x.pk").write_text("stray")


def make_folder(root: Path) -> None:
    for label in ("happy", "Sad"):
        for speaker in ("alice", "bob"):
            wav(root / label / speaker / f"{speaker}_{label}_1.wav")
    (root / "README.md").write_text("stray")


def make_flat_folder(root: Path) -> None:
    for label in ("happy", "sad"):
        for speaker in ("alice", "bob"):
            wav(root / label / f"{speaker}_{label}_1.wav")


def make_csv(root: Path) -> Path:
    wav(root / "audio" / "a.wav")
    wav(root / "audio" / "b.wav")
    wav(root / "elsewhere" / "c.flac")
    listing = root / "corpus.csv"
    pd.DataFrame(
        {
            "path": ["audio/a.wav", "audio/b.wav", str(root / "elsewhere" / "c.flac"), "gone.wav"],
            "label": ["Happy", "sad", "sad", "sad"],
            "speaker": ["01", "02", "02", "03"],
            "gender": ["f", "m", "m", "m"],
        }
    ).to_csv(listing, index=False)
    return listing


# ----------------------------------------------------------------------------- per corpus


def test_cremad(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_cremad(tmp_path)
    corpus = cremad.load(tmp_path)
    assert len(corpus) == 4
    assert sorted(corpus.speaker.unique()) == ["1001", "1002", "1091"]
    assert set(corpus.label) == {"angry", "happy", "neutral", "sad"}
    genders = corpus.drop_duplicates("speaker").set_index("speaker").gender
    assert (genders["1001"], genders["1002"]) == ("male", "female")
    assert pd.isna(genders["1091"])  # 1091 is not in VideoDemographics.csv
    row = corpus.set_index("speaker").loc["1091"]
    assert (row.intensity, row.text) == ("low", "I think I've seen this before.")
    assert Path(corpus.path[0]).is_absolute()
    assert "skipped 1 files" in caplog.text and "notes.txt" in caplog.text


def test_cremad_without_demographics_and_root_at_audio(tmp_path: Path) -> None:
    wav(tmp_path / "1001_DFA_ANG_XX.wav")
    corpus = cremad.load(tmp_path)
    assert corpus.gender.isna().all()


def test_tess_is_case_insensitive_and_maps_pleasant_surprise(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_tess(tmp_path)
    corpus = tess.load(tmp_path)
    assert len(corpus) == 5
    assert sorted(corpus.speaker.unique()) == ["OAF", "YAF"]
    assert set(corpus.label) == {"angry", "fearful", "surprised", "sad"}
    assert (corpus.gender == "female").all()
    assert set(corpus.text) == {"back", "bar", "base", "bath", "bean"}
    assert "desktop.ini" in caplog.text


def test_emodb(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_emodb(tmp_path)
    corpus = emodb.load(tmp_path)
    assert len(corpus) == 4
    assert sorted(corpus.speaker.unique()) == ["03", "08", "16"]
    assert set(corpus.label) == {"happy", "angry", "boredom", "sad"}
    genders = dict(zip(corpus.speaker, corpus.gender, strict=True))
    assert genders == {"03": "male", "08": "female", "16": "female"}
    assert corpus.set_index("text_id").loc["a01", "text"] == "Der Lappen liegt auf dem Eisschrank."
    assert "99a01Fa.wav" in caplog.text and "lablaut" not in caplog.text


def test_savee_reads_sa_and_su_before_a_and_s(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_savee(tmp_path)
    corpus = savee.load(tmp_path)
    assert len(corpus) == 5
    assert sorted(corpus.speaker.unique()) == ["DC", "JE", "KL"]
    labels = dict(zip(corpus.sentence, corpus.label, strict=True))
    assert labels == {
        "a01": "angry",
        "sa01": "sad",
        "su02": "surprised",
        "n30": "neutral",
        "d15": "disgust",
    }
    assert (corpus.gender == "male").all()
    assert "Info.txt" in caplog.text


def test_savee_flat_mirror_names(tmp_path: Path) -> None:
    wav(tmp_path / "ALL" / "JK_f03.wav")
    corpus = savee.load(tmp_path)
    assert (corpus.speaker[0], corpus.label[0]) == ("JK", "fearful")


def test_iemocap_speaker_is_who_speaks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_iemocap(tmp_path)
    corpus = iemocap.load(tmp_path)
    assert len(corpus) == 4  # the xxx utterances are dropped
    assert sorted(corpus.speaker.unique()) == ["Ses01_F", "Ses01_M", "Ses02_F", "Ses02_M"]
    assert set(corpus.session) == {"Ses01", "Ses02"}
    assert set(corpus.label) == {"neutral", "excited", "angry"}
    row = corpus.set_index("utterance").loc["Ses01F_impro01_M000"]
    assert (row.speaker, row.gender, row.label) == ("Ses01_M", "male", "excited")
    assert row.text == "Do you have your forms?" and row.improvised
    assert (row.valence, row.activation, row.dominance) == (2.0, 3.5, 3.5)
    assert corpus.set_index("utterance").text.isna().sum() == 2  # Session2 has no transcripts
    assert "x.pk" in caplog.text


def test_iemocap_merge_excited_and_improvised_filter(tmp_path: Path) -> None:
    make_iemocap(tmp_path)
    merged = iemocap.load(tmp_path, merge_excited=True)
    assert set(merged.label) == {"neutral", "happy", "angry"}
    impro = iemocap.load(tmp_path, improvised=True)
    assert set(impro.dialog) == {"Ses01F_impro01"}
    scripted = iemocap.load(tmp_path, improvised=False)
    assert set(scripted.dialog) == {"Ses02M_script01_1"}


def test_iemocap_missing_audio_is_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    make_iemocap(tmp_path)
    (tmp_path / "Session2/sentences/wav/Ses02M_script01_1/Ses02M_script01_1_F000.wav").unlink()
    assert len(iemocap.load(tmp_path)) == 3
    assert "skipped 1 files that are labelled but missing" in caplog.text


def test_folder_speakers_from_sub_folders(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    make_folder(tmp_path)
    corpus = folder.load(tmp_path)
    assert len(corpus) == 4
    assert set(corpus.speaker) == {"alice", "bob"}
    assert set(corpus.label) == {"happy", "sad"}
    assert "README.md" in caplog.text


def test_folder_speaker_pattern(tmp_path: Path) -> None:
    make_flat_folder(tmp_path)
    corpus = folder.load(tmp_path, speaker_pattern=r"^(\w+?)_")
    assert sorted(corpus.speaker) == ["alice", "alice", "bob", "bob"]


def test_folder_without_speakers_explains_the_fix(tmp_path: Path) -> None:
    make_flat_folder(tmp_path)
    with pytest.raises(
        SerError, match=r"speaker-independent splits need speakers.*speaker_pattern"
    ):
        folder.load(tmp_path)


def test_folder_bad_pattern_is_a_user_error(tmp_path: Path) -> None:
    make_flat_folder(tmp_path)
    with pytest.raises(SerError, match="speaker_pattern"):
        folder.load(tmp_path, speaker_pattern="(")


def test_csv_relative_paths_and_missing_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    listing = make_csv(tmp_path)
    corpus = table.load(listing)
    assert list(corpus.columns[:3]) == ["path", "speaker", "label"]
    assert corpus.path.tolist() == [
        str((tmp_path / "audio" / "a.wav").resolve()),
        str((tmp_path / "audio" / "b.wav").resolve()),
        str((tmp_path / "elsewhere" / "c.flac").resolve()),
    ]
    assert corpus.speaker.tolist() == ["01", "02", "02"]  # ids stay strings
    assert corpus.label.tolist() == ["happy", "sad", "sad"]
    assert corpus.gender.tolist() == ["f", "m", "m"]
    assert "skipped 1 files that are missing" in caplog.text and "gone.wav" in caplog.text


def test_csv_root_and_renamed_columns(tmp_path: Path) -> None:
    wav(tmp_path / "audio" / "a.wav")
    listing = tmp_path / "lists" / "t.csv"
    listing.parent.mkdir()
    listing.write_text("file,emotion,spk\na.wav,neutral,s1\n")
    corpus = table.load(
        listing,
        root=tmp_path / "audio",
        path_column="file",
        label_column="emotion",
        speaker_column="spk",
    )
    assert corpus.path[0] == str((tmp_path / "audio" / "a.wav").resolve())


def test_csv_missing_columns_are_named(tmp_path: Path) -> None:
    listing = tmp_path / "t.csv"
    listing.write_text("path,label\na.wav,sad\n")
    with pytest.raises(SerError, match=r"lacks columns speaker \(speaker_column\)"):
        table.load(listing)


@pytest.mark.parametrize("delimiter", [";", "\t", ","])
def test_csv_delimiter_is_detected(tmp_path: Path, delimiter: str) -> None:
    # Spreadsheets in many locales save "CSV" with semicolons.
    wav(tmp_path / "a.wav")
    wav(tmp_path / "b.wav")
    listing = tmp_path / "t.csv"
    rows = [["path", "label", "speaker"], ["a.wav", "Sad", "01"], ["b.wav", "happy", "02"]]
    listing.write_text("".join(delimiter.join(row) + "\n" for row in rows))
    corpus = table.load(listing)
    assert corpus.label.tolist() == ["sad", "happy"] and corpus.speaker.tolist() == ["01", "02"]


def test_csv_with_no_existing_file_is_an_error(tmp_path: Path) -> None:
    listing = tmp_path / "t.csv"
    listing.write_text("path,label,speaker\ngone.wav,sad,1\n")
    with pytest.raises(SerError, match="no existing audio files"):
        table.load(listing)


def test_csv_missing_table(tmp_path: Path) -> None:
    with pytest.raises(SerError, match=r"not found at .*nope\.csv"):
        table.load(tmp_path / "nope.csv")


# ----------------------------------------------------------------------------- common rules

LOADERS: dict[str, tuple[Callable[..., pd.DataFrame], str, str]] = {
    "cremad": (cremad.load, "CREMA-D", r"\$CREMAD_ROOT.*download_data\.py cremad"),
    "tess": (tess.load, "TESS", r"\$TESS_ROOT.*download_data\.py tess"),
    "emodb": (emodb.load, "EmoDB", r"\$EMODB_ROOT.*download_data\.py emodb"),
    "savee": (savee.load, "SAVEE", r"\$SAVEE_ROOT.*kahlan\.eps\.surrey\.ac\.uk/savee"),
    "iemocap": (iemocap.load, "IEMOCAP", r"\$IEMOCAP_ROOT.*sail\.usc\.edu/iemocap"),
    "folder": (folder.load, "folder dataset", r"dataset\.loader\.root.*<label>"),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_missing_root_names_corpus_path_and_fix(name: str, tmp_path: Path) -> None:
    load, corpus, fix = LOADERS[name]
    with pytest.raises(SerError, match=rf"^{corpus} not found at .*nope; .*{fix}") as info:
        load(tmp_path / "nope")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_root_without_usable_files_is_an_error(name: str, tmp_path: Path) -> None:
    load, corpus, _ = LOADERS[name]
    (tmp_path / "x.wav").write_bytes(b"")
    with pytest.raises(SerError, match=f"no {corpus} files"):
        load(tmp_path)


# ----------------------------------------------------------------------------- configs

FIXTURES: dict[str, Callable[[Path], object]] = {
    "cremad": make_cremad,
    "tess": make_tess,
    "emodb": make_emodb,
    "savee": make_savee,
    "iemocap": make_iemocap,
    "folder": make_folder,
    "csv": make_csv,
}


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_config_instantiates_on_a_fixture(name: str, tmp_path: Path) -> None:
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    assert cfg.name == name
    made = FIXTURES[name](tmp_path)
    override = {"path": str(made)} if name == "csv" else {"root": str(tmp_path)}
    corpus = instantiate(cfg.loader, **override)
    assert {"path", "speaker", "label"} <= set(corpus.columns)
    if name in ("folder", "csv"):
        assert OmegaConf.is_missing(cfg, "labels")  # the user names their labels
        return
    labels = list(cfg.labels)
    assert len(set(labels)) == len(labels)
    assert set(corpus.label) & set(labels)
    emitted = {
        "cremad": cremad.EMOTIONS.values(),
        "tess": tess.EMOTIONS.values(),
        "emodb": emodb.EMOTIONS.values(),
        "savee": savee.EMOTIONS.values(),
        "iemocap": ["neutral", "happy", "sad", "angry"],  # the 4-class set-up
    }[name]
    assert set(labels) == set(emitted)
    if name == "iemocap":
        assert "excited" not in set(corpus.label)  # merge_excited: true


def test_iemocap_config_options(tmp_path: Path) -> None:
    make_iemocap(tmp_path)
    cfg = OmegaConf.load(CONF / "iemocap.yaml")
    corpus = instantiate(cfg.loader, root=str(tmp_path), improvised=False, merge_excited=False)
    assert set(corpus.dialog) == {"Ses02M_script01_1"}


def test_folder_config_speaker_pattern(tmp_path: Path) -> None:
    make_flat_folder(tmp_path)
    cfg = OmegaConf.load(CONF / "folder.yaml")
    corpus = instantiate(cfg.loader, root=str(tmp_path), speaker_pattern=r"^(\w+?)_")
    assert set(corpus.speaker) == {"alice", "bob"}


def test_corpus_configs_default_root_uses_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("cremad", "tess", "emodb", "savee", "iemocap"):
        env = f"{name.upper()}_ROOT"
        monkeypatch.setenv(env, f"/data/{name}")
        cfg = OmegaConf.load(CONF / f"{name}.yaml")
        raw = OmegaConf.to_container(cfg.loader)
        assert raw["root"] == f"${{oc.env:{env},${{paths.data_dir}}/{name}}}"
        resolved = OmegaConf.create({"paths": {"data_dir": "/d"}, "loader": cfg.loader})
        assert resolved.loader.root == f"/data/{name}"
        monkeypatch.delenv(env)
        assert resolved.loader.root == f"/d/{name}"
