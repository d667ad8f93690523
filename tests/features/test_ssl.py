"""features=ssl with small encoders generated from the real transformers classes (no hub, no
download): saved with save_pretrained and loaded through the path a hub model takes."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ser_server
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


def encoder_calls(extractor: SSLFeatures) -> list[int]:
    """Batch sizes of the encoder's calls, recorded by a forward hook."""
    sizes: list[int] = []
    extractor.encoder.register_forward_hook(
        lambda _module, args, kwargs, _out: sizes.append(
            len(kwargs.get("input_values", kwargs.get("input_features")))
        ),
        with_kwargs=True,
    )
    return sizes


@pytest.mark.parametrize("family", ["wav2vec2", "wav2vec2-layer-norm", "whisper"])
def test_batched_extraction_equals_one_file_at_a_time(
    encoders, make_encoder, tmp_path: Path, family: str
) -> None:
    if family == "wav2vec2-layer-norm":
        folder = make_encoder("wav2vec2", tmp_path / "large", layer_norm=True)
    else:
        folder = encoders[family]
    waves = [speech(s) for s in (1.1, 1.7, 1.1, 2.3, 1.1)]
    one = SSLFeatures(str(folder), batch_size=1)
    expected = [one(torch.from_numpy(w)).numpy() for w in waves]
    batched = SSLFeatures(str(folder), batch_size=4)
    calls = encoder_calls(batched)
    for got, want in zip(batched.extract_batch(waves), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    if family == "wav2vec2":
        # A group-norm front-end normalises over time, padding included: one length a call.
        assert sorted(calls) == [1, 1, 3]
    else:
        # Masked padding (or Whisper's fixed 30-s windows): any lengths share a call.
        assert calls == [4, 1]


def test_corpus_extraction_batches_files_on_every_thread(
    encoders, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import soundfile as sf

    paths = []
    for i in range(5):
        sf.write(tmp_path / f"{i}.wav", speech(1.2), 16000)
        paths.append(str(tmp_path / f"{i}.wav"))
    (tmp_path / "broken.wav").write_bytes(b"RIFF not audio")
    paths.insert(2, str(tmp_path / "broken.wav"))
    extractor = SSLFeatures(str(encoders["whisper"]), batch_size=4)
    calls = encoder_calls(extractor)
    threads: list[int] = []
    encode = extractor._encode

    def encode_counting_threads(chunks):
        threads.append(torch.get_num_threads())
        return encode(chunks)

    monkeypatch.setattr(extractor, "_encode", encode_counting_threads)
    result = extract_corpus(
        paths, Preprocessor(sample_rate=16000), extractor, {"model": "w"}, progress=False, n_jobs=2
    )
    assert calls == [4, 1]  # five readable files, batches of four, in this process
    # batch_size=auto: batches on a GPU; one chunk a call on a CPU, where they did not pay
    auto = SSLFeatures(str(encoders["whisper"]))
    assert auto.batch_size == (8 if torch.cuda.is_available() else 1)
    with pytest.raises(SerError, match="batch_size=0"):
        SSLFeatures(str(encoders["whisper"]), batch_size=0)
    assert threads == [torch.get_num_threads()] * 2  # not one thread per file as for logmel
    assert list(result.skipped) == [str(tmp_path / "broken.wav")]
    np.testing.assert_allclose(
        result.features[0],
        extractor(torch.from_numpy(Preprocessor(16000).load(paths[0]))),
        atol=1e-5,
    )


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
    weights = encoders[family]
    if family == "wav2vec2":  # a copy of its own, taken away below
        weights = Path(shutil.copytree(weights, tmp_path / "weights" / family))
    cfg = make_cfg(
        [
            "features=ssl",
            f"features.extractor.model={weights}",
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
    assert run.data.params["features/extractor/model"] == str(weights)

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
    # ser-serve, a real server in another working directory: the encoder found from there too.
    import io

    import httpx
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, wave, 16000, format="WAV", subtype="FLOAT")  # no quantising
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with ser_server(checkpoint, elsewhere) as base:
        files = {"file": ("clip.wav", buffer.getvalue(), "audio/wav")}
        body = httpx.post(f"{base}/predict", files=files, timeout=120).json()
    assert body["label"] == prediction.label
    for name, probability in prediction.probabilities.items():
        assert body["probabilities"][name] == pytest.approx(probability, abs=1e-5)

    # Registered with a copy of the encoder, the model loads where the folder is gone; the
    # version that only named the folder says which folder is missing.
    version = register_model(
        run.info.run_id, "ser_ssl", tracking_uri=uri, checkpoint=checkpoint, bundle_encoder=True
    )
    shutil.move(weights, tmp_path / "moved")
    bundled = client.download_artifacts(run.info.run_id, "model-2", str(tmp_path / "bundled"))
    out = mlflow.pyfunc.load_model(bundled).predict(
        pd.DataFrame({"audio": [wave.tolist()], "sample_rate": [16000]})
    )
    assert out["label"][0] == prediction.label
    again = load_recognizer(f"models:/ser_ssl/{version}", uri).predict_array(wave, 16000)
    assert again.probabilities == pytest.approx(prediction.probabilities, abs=1e-5)
    with pytest.raises(SerError, match="no such directory"):
        load_recognizer("models:/ser_ssl/1", uri)


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


def test_whisper_has_no_causal_variant_and_says_why(encoders) -> None:
    with pytest.raises(SerError, match="fixed 30-s windows") as err:
        SSLFeatures(str(encoders["whisper"]), block_s=0.24)
    assert "\n" not in str(err.value)
    with pytest.raises(SerError, match="output=frames"):
        SSLFeatures(str(encoders["hubert"]), block_s=0.24, output="pooled")


@pytest.mark.slow
def test_the_causal_variant_streams_without_hearing_ahead(encoders, make_cfg, tmp_path) -> None:
    """block_s: a causal CNN-LSTM on block-encoded frames; each chunk's posterior is the same
    whether or not the audio after it exists, as an Emo-RL stream needs."""
    from ser.inference.streaming import check_streaming, stream_wave
    from ser.train import train_folds

    checkpoint = tmp_path / "model.ckpt"
    cfg = make_cfg(
        [
            "features=ssl",
            f"features.extractor.model={encoders['wav2vec2']}",
            "features.extractor.block_s=0.24",
            "features.extractor.context_s=0.48",
            "model=cnn_lstm",
            "model.causal=true",
            "trainer.max_epochs=1",
            f"save_checkpoint={checkpoint}",
        ]
    )
    train_folds(cfg)
    recognizer = load_recognizer(checkpoint)
    check_streaming(recognizer)
    extractor = recognizer.extractor
    wave = speech(2.0)
    whole = stream_wave(recognizer, wave, chunk_s=0.24)
    k = 3  # the audio up to the end of chunk k's last frame window, and nothing after it
    cut = (k * extractor.block_frames - 1) * 320 + extractor.receptive_field
    heard = stream_wave(recognizer, wave[:cut], chunk_s=0.24)
    assert heard.chunks == k < whole.chunks
    np.testing.assert_allclose(heard.posteriors, whole.posteriors[:k], atol=1e-5)
    assert not np.allclose(whole.posteriors[k - 1], whole.posteriors[-1], atol=1e-4)

    with pytest.raises(SerError, match="multiple of block_s"):
        stream_wave(recognizer, wave, chunk_s=0.36)
    recognizer.extractor = SSLFeatures(str(encoders["wav2vec2"]))  # attends over whole chunks
    with pytest.raises(SerError, match=re.escape("features.extractor.block_s=<rl.chunk_s>")):
        check_streaming(recognizer)
