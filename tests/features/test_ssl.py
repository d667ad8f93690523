"""features=ssl with small encoders generated from the real transformers classes (no hub, no
download): saved with save_pretrained and loaded through the path a hub model takes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from transformers import AutoFeatureExtractor, AutoModel, WhisperModel

from ser.data.voice import synthesize_utterance
from ser.errors import SerError
from ser.features import FeatureCache, extract_corpus
from ser.features.ssl import SSLFeatures
from ser.inference import load_recognizer
from ser.preprocess import Preprocessor


def speech(seconds: float = 1.3) -> np.ndarray:
    return synthesize_utterance(1, "angry", 0, 16000, min_duration=seconds, max_duration=seconds)


def reference_states(folder: Path, wave: np.ndarray) -> torch.Tensor:
    """What transformers itself returns for the model's own normalised input."""
    model = AutoModel.from_pretrained(folder).eval()
    processor = AutoFeatureExtractor.from_pretrained(folder)
    inputs = processor(wave, sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        if isinstance(model, WhisperModel):
            out = model.encoder(inputs["input_features"], output_hidden_states=True)
            frames = int(np.ceil(len(wave) / 320))
            return torch.stack(out.hidden_states)[:, 0, :frames]
        out = model(inputs["input_values"], output_hidden_states=True)
        return torch.stack(out.hidden_states)[:, 0]


@pytest.mark.parametrize("family", ["wav2vec2", "hubert", "wavlm", "whisper"])
def test_every_output_equals_the_hidden_states_of_transformers(encoders, family: str) -> None:
    wave = speech()
    states = reference_states(encoders[family], wave)  # (layers + 1, frames, dim)
    assert states.shape[0] == 3 and states.shape[2] == 32
    x = torch.from_numpy(wave)
    for layer in range(3):
        frames = SSLFeatures(str(encoders[family]), output="frames", layer=layer)
        torch.testing.assert_close(frames(x), states[layer], atol=1e-5, rtol=0)
    layers = SSLFeatures(str(encoders[family]), output="layers")
    torch.testing.assert_close(layers(x), states.mean(dim=1), atol=1e-5, rtol=0)
    pooled = SSLFeatures(str(encoders[family]), output="pooled", layers=[1, -1])
    expected = torch.cat(
        [
            states[[1, 2]].mean(dim=1).reshape(-1),
            states[[1, 2]].std(dim=1, correction=0).reshape(-1),
        ]
    )
    torch.testing.assert_close(pooled(x)[0], expected, atol=1e-5, rtol=0)
    assert pooled.dim == 2 * 2 * 32
    assert frames.hop_length == 320  # 20 ms: the conv strides, or Whisper's hop 160 x 2
    assert len(states[0]) == pytest.approx(len(wave) / frames.hop_length, abs=3)


def test_a_short_tail_joins_the_chunk_before(encoders) -> None:
    wave = speech(2.02)  # two 1-s chunks and 20 ms, too short for the conv front-end alone
    out = SSLFeatures(str(encoders["wav2vec2"]), chunk_s=1.0)(torch.from_numpy(wave))
    # Each of the two chunks loses the few edge frames its conv receptive field cannot fill.
    assert len(wave) / 320 - 6 <= len(out) <= len(wave) / 320


def test_long_audio_runs_in_chunks_of_whole_encoder_frames(encoders) -> None:
    wave = speech(3.0)
    whole = SSLFeatures(str(encoders["whisper"]), chunk_s=60.0)
    chunked = SSLFeatures(str(encoders["whisper"]), chunk_s=1.0)
    assert chunked.chunk_samples == 16000 and len(wave) > 2 * chunked.chunk_samples
    out = chunked(torch.from_numpy(wave))
    # Whisper frames are 20 ms whatever the chunking: the same count as in one call.
    assert out.shape == whole(torch.from_numpy(wave)).shape == (int(np.ceil(len(wave) / 320)), 32)


def test_other_weights_under_the_same_name_are_extracted_afresh(
    tmp_path: Path, make_encoder
) -> None:
    folder = make_encoder("wav2vec2", tmp_path / "encoder")
    paths = []
    for i in range(2):
        path = tmp_path / f"{i}.wav"
        import soundfile as sf

        sf.write(path, speech(1.0 + 0.2 * i), 16000)
        paths.append(str(path))
    cache = FeatureCache(tmp_path / "cache")
    preprocessor = Preprocessor(sample_rate=16000)
    config = {"_target_": "ser.features.ssl.SSLFeatures", "model": str(folder)}

    def extract() -> tuple[int, list]:
        result = extract_corpus(
            paths, preprocessor, SSLFeatures(str(folder)), config, cache, progress=False, n_jobs=1
        )
        return result.cache_hits, result.features

    assert extract()[0] == 0
    hits, first = extract()
    assert hits == 2
    make_encoder("wav2vec2", folder, seed=1)  # a new checkpoint, the same name and config
    hits, again = extract()
    assert hits == 0
    assert not np.allclose(first[0], again[0])


def test_no_local_copy_is_one_line_that_says_how_to_get_the_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache
    with pytest.raises(SerError) as err:
        SSLFeatures("facebook/wav2vec2-base")
    message = str(err.value)
    assert "\n" not in message
    assert "hf download facebook/wav2vec2-base --local-dir DIR" in message
    assert "features.extractor.model=DIR" in message
    with pytest.raises(SerError, match="no such directory"):
        SSLFeatures(str(tmp_path / "missing"))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "overrides"),
    [
        ("wav2vec2", ["model=mlp", "model.net.stats=[mean]", "features.extractor.output=pooled"]),
        ("hubert", ["model=mlp", "model.net.stats=[mean]", "features.extractor.output=pooled"]),
        ("wavlm", ["model=cnn_lstm"]),
        ("wavlm", ["model=ssl_layers", "features.extractor.output=layers"]),
        ("whisper", ["model=lstm"]),
    ],
)
def test_training_on_ssl_features_is_tracked_and_the_model_predicts(
    encoders, make_cfg, family: str, overrides: list[str], tmp_path: Path
) -> None:
    from ser.train import train_folds

    checkpoint = tmp_path / "model.ckpt"
    cfg = make_cfg(
        [
            "features=ssl",
            f"features.extractor.model={encoders[family]}",
            "trainer.max_epochs=1",
            f"save_checkpoint={checkpoint}",
            *overrides,
        ]
    )
    metrics = train_folds(cfg)
    assert "test/uar" in metrics
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["features/extractor/model"] == str(encoders[family])

    recognizer = load_recognizer(checkpoint)  # the encoder found again from the checkpoint
    wave = speech()
    prediction = recognizer.predict_array(wave, 16000, "clip")
    assert prediction.label in recognizer.class_names
    assert sum(prediction.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    if family != "wav2vec2":
        return
    # The MLflow pyfunc: registered, loaded from its folder, raw audio in, the same answer.
    import mlflow.pyfunc
    import pandas as pd

    from ser.tracking.registry import register_model

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    register_model(run.info.run_id, "ser_ssl", tracking_uri=uri, checkpoint=checkpoint)
    folder = client.download_artifacts(run.info.run_id, "model", str(tmp_path / "pyfunc"))
    pyfunc = mlflow.pyfunc.load_model(folder)
    out = pyfunc.predict(pd.DataFrame({"audio": [wave.tolist()], "sample_rate": [16000]}))
    assert out["label"][0] == prediction.label
    for name, probability in prediction.probabilities.items():
        assert out[name][0] == pytest.approx(probability, abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["wav2vec2", "whisper"])
def test_fine_tuning_trains_the_encoder_but_not_its_frozen_parts(
    encoders, make_cfg, family: str, tmp_path: Path
) -> None:
    from ser.train import train_folds

    checkpoint = tmp_path / "model.ckpt"
    cfg = make_cfg(
        [
            "model=ssl_finetune",
            "features=waveform",
            f"model.net.model={encoders[family]}",
            "model.net.freeze_layers=1",
            "trainer.max_epochs=1",
            "data.batch_size=8",
            f"save_checkpoint={checkpoint}",
        ]
    )
    train_folds(cfg)
    tuned = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    original = AutoModel.from_pretrained(encoders[family]).state_dict()
    if family == "whisper":
        original = {k.removeprefix("encoder."): v for k, v in original.items()}
    frozen = (
        ("conv1.", "conv2.", "embed_positions.") if family == "whisper" else ("feature_extractor.",)
    )
    first_layer = "layers.0." if family == "whisper" else "encoder.layers.0."
    changed, kept = [], []
    for name, value in original.items():
        key = f"net.encoder.{name}"
        if key not in tuned:
            continue  # the decoder of Whisper is not part of the classifier
        (kept if torch.equal(tuned[key], value) else changed).append(name)
    assert changed, "fine-tuning changed no encoder weight"
    assert all(name.startswith(frozen) or name.startswith(first_layer) for name in kept), kept
    assert not [n for n in changed if n.startswith(frozen) or n.startswith(first_layer)]
    assert not torch.equal(tuned["net.layer_weights"], torch.zeros(3))

    recognizer = load_recognizer(checkpoint)
    prediction = recognizer.predict_array(speech(), 16000, "clip")
    assert prediction.label in recognizer.class_names


def test_the_encoder_learns_slower_than_the_head_and_its_front_end_not_at_all(encoders) -> None:
    import functools

    from ser.models.module import SERModule
    from ser.models.nets.ssl import SSLClassifier

    net = SSLClassifier(1, 4, str(encoders["wavlm"]), freeze_layers=1, encoder_lr_scale=0.1)
    module = SERModule(net, ["a", "b", "c", "d"], functools.partial(torch.optim.AdamW, lr=1e-3))
    optimizer = module.configure_optimizers()
    encoder_group, head_group = optimizer.param_groups
    assert encoder_group["lr"] == pytest.approx(1e-4) and head_group["lr"] == pytest.approx(1e-3)
    trained = {id(p) for group in optimizer.param_groups for p in group["params"]}
    front_end = list(net.encoder.feature_extractor.parameters())
    first_layer = list(net.encoder.encoder.layers[0].parameters())
    assert not any(id(p) in trained for p in front_end + first_layer)
    assert all(id(p) in trained for p in net.encoder.encoder.layers[1].parameters())
    with pytest.raises(SerError, match="add features=waveform"):
        SSLClassifier(40, 4, str(encoders["wavlm"]))
