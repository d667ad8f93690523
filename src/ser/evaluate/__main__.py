"""`python -m ser.evaluate ckpt_path=...`: score a trained checkpoint on the test speakers.

Writes metrics.json (DVC metrics), predictions.csv (path, speaker, actual, predicted and the
posteriors; the DVC confusion plot's input), the per-class report and confusion_matrix.png into
`eval_dir`.
"""

from __future__ import annotations

import json

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from ser.config import check_required
from ser.data.datamodule import build_datamodule
from ser.errors import SerError, exit_on_user_error
from ser.evaluate.metrics import write_evaluation
from ser.models import load_checkpoint
from ser.project import CONFIG_DIR


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
@exit_on_user_error
def main(cfg: DictConfig) -> None:
    check_required(cfg)  # ckpt_path above all
    model, stored = load_checkpoint(cfg.ckpt_path)
    trained = OmegaConf.create(stored)
    if list(trained.dataset.labels) != list(cfg.dataset.labels):
        raise SerError(
            f"checkpoint labels {list(trained.dataset.labels)} differ from dataset.labels "
            f"{list(cfg.dataset.labels)}; evaluate with the dataset the model was trained on"
        )
    datamodule = build_datamodule(cfg, frontend=trained)
    targets: list[int] = []
    posteriors = []
    with torch.no_grad():
        for x, lengths, y in datamodule.test_dataloader():
            posteriors.append(model(x, lengths).softmax(dim=-1))
            targets += y.tolist()
    probs = torch.cat(posteriors).numpy()
    files = write_evaluation(
        targets,
        probs.argmax(axis=1).tolist(),
        model.class_names,
        cfg.eval_dir,
        datamodule.split_utterances("test"),
        probs,
    )
    metrics = json.loads(files["metrics"].read_text())
    print(" ".join(f"{k}={v:.4f}" for k, v in metrics.items()), f"-> {cfg.eval_dir}")


if __name__ == "__main__":
    main()
