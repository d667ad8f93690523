"""Hydra's basic sweeper that goes on past a failed job and summarises the failures."""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper as HydraBasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

# Written into the sweep folder after the last job: every job's number, overrides and status.
SUMMARY_FILE = "sweep_summary.yaml"


def _error_line(error: BaseException) -> str:
    """One line for a job's exception; a user error (ser's SerError) is its message."""
    from ser.errors import find_user_error

    user_error = find_user_error(error)
    if user_error is not None:
        return f"error: {user_error}"
    message = str(error).strip().splitlines()
    return f"{type(error).__name__}: {message[0] if message else ''}".rstrip(": ")


def _job_number(result: JobReturn, default: int) -> int:
    hydra_cfg = result.hydra_cfg
    if hydra_cfg is None:
        return default
    return int(OmegaConf.select(hydra_cfg, "hydra.job.num", default=default))


class SerBasicSweeper(HydraBasicSweeper):
    """Hydra's BasicSweeper (same settings, same batches, same job numbers), except that a
    failed job is not raised at once: the other jobs run, then a summary names every failed
    job and the command exits with status 1.

    Hydra's own sweeper raises the first failure after its batch, so a sweep of one batch runs
    all its jobs anyway but ends in that one traceback, and later batches never run."""

    def __init__(self, max_batch_size: int | None, params: dict[str, str] | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None
        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        overrides = parser.parse_overrides([*self._parse_config(), *arguments])
        self.overrides = self.split_arguments(overrides, self.max_batch_size)
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")

        returns: list[Sequence[JobReturn]] = []
        jobs: list[dict[str, Any]] = []
        initial_job_idx = 0
        while not self.is_done():
            batch = self.get_job_batch()
            self.validate_batch_is_legal(batch)  # composition errors stop the sweep at once
            results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
            for offset, (job_overrides, result) in enumerate(zip(batch, results, strict=True)):
                number = _job_number(result, initial_job_idx + offset)
                job: dict[str, Any] = {"job": number, "overrides": list(job_overrides)}
                if result.status == JobStatus.FAILED:
                    error = result._return_value  # the job's exception; .return_value raises it
                    job |= {"status": "FAILED", "error": _error_line(error)}
                    # A crash's traceback; a user error (bad input) is its one line.
                    trace = "".join(traceback.format_exception(error)).rstrip()
                    detail = job["error"] if job["error"].startswith("error: ") else trace
                    log.error("Job %d (%s) failed:\n%s", number, " ".join(job_overrides), detail)
                else:
                    job["status"] = "COMPLETED"
                jobs.append(job)
            initial_job_idx += len(batch)
            returns.append(results)

        failed = [j for j in jobs if j["status"] == "FAILED"]
        summary = {"jobs": len(jobs), "failed": len(failed), "results": jobs}
        (sweep_dir / SUMMARY_FILE).write_text(yaml.safe_dump(summary, sort_keys=False))
        if failed:
            lines = [f"Sweep {sweep_dir.name}: {len(failed)} of {len(jobs)} jobs failed"]
            lines += [
                f"  job {j['job']} ({' '.join(j['overrides'])}): {j['error']}" for j in failed
            ]
            # stdout, as the runs' own summaries; the exit status tells scripts and CI.
            print("\n".join(lines), flush=True)
            sys.exit(1)
        log.info("Sweep %s: all %d jobs completed", sweep_dir.name, len(jobs))
        return returns
