"""Thin entry point so that `python train.py model=cnn_lstm` works from the repo root."""

from ser.train import main

if __name__ == "__main__":
    main()
