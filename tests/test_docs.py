"""The documentation: the README stays one screen, its links and pictures resolve, the site
builds with no warning (and a broken link does fail it), and every shell block marked
`<!-- runnable -->` runs as written on the synthetic corpus."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from markdown.extensions.toc import slugify

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
MKDOCS = str(Path(sys.executable).with_name("mkdocs"))
# The marker: an HTML comment on the line before a ```bash fence (invisible on GitHub and on
# the site). The blocks run in one scratch folder, README first, then the pages in nav order,
# so a block may use what an earlier one wrote (the getting-started run saves the model the
# "Using a trained model" block uses).
RUNNABLE = re.compile(r"^<!-- runnable -->\n```bash\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def nav_pages(nav: list) -> list[str]:
    pages = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def pages() -> list[Path]:
    """README.md, then the site's pages in the order of the nav."""
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    return [README, *(DOCS / page for page in nav_pages(config["nav"]))]


def runnable_blocks() -> list[tuple[str, str]]:
    return [
        (str(page.relative_to(REPO)), block)
        for page in pages()
        for block in RUNNABLE.findall(page.read_text())
    ]


def headings(page: Path) -> set[str]:
    """The anchors of a page's headings, as the site's table of contents makes them."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    found = re.findall(r"^#{1,6} (.+)$", text, re.M)
    return {slugify(re.sub(r"[`*]", "", title).strip(), "-") for title in found}


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [MKDOCS, "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_the_readme_fits_one_screen_of_about_12_kb() -> None:
    assert len(README.read_bytes()) <= 12 * 1024


def test_the_readmes_links_and_pictures_resolve() -> None:
    targets = [t for t in LINK.findall(README.read_text()) if not re.match(r"\w+://", t)]
    assert any(t.startswith("docs/") for t in targets)
    for target in targets:
        path, _, anchor = target.partition("#")
        assert (REPO / path).is_file(), f"README links to {path}, which does not exist"
        if anchor:
            assert anchor in headings(REPO / path), f"README links to a missing #{anchor}"


def test_every_picture_is_shown_somewhere() -> None:
    shown = "".join(page.read_text() for page in pages())
    for picture in sorted((DOCS / "img").iterdir()):
        assert f"img/{picture.name}" in shown, f"docs/img/{picture.name} is on no page"


def test_the_site_builds_with_no_warning(tmp_path: Path) -> None:
    result = mkdocs_build(REPO / "mkdocs.yml", tmp_path / "site")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNING" not in result.stderr, result.stderr[-3000:]
    assert (tmp_path / "site" / "reference" / "inference" / "index.html").is_file()


def test_a_broken_link_anchor_picture_or_api_reference_fails_the_build(tmp_path: Path) -> None:
    shutil.copytree(DOCS, tmp_path / "docs")
    shutil.copy(REPO / "mkdocs.yml", tmp_path / "mkdocs.yml")
    (tmp_path / "src").symlink_to(REPO / "src")
    page = tmp_path / "docs" / "models.md"
    broken = [
        "[a](nowhere.md)",
        "[b](results.md#no-such-heading)",
        "![c](img/no_such_picture.png)",
        "[d][ser.models.no_such_function]",
    ]
    page.write_text(page.read_text() + "\n" + "\n".join(broken) + "\n")
    result = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert result.returncode != 0
    for name in ("nowhere.md", "#no-such-heading", "no_such_picture.png", "no_such_function"):
        assert name in result.stderr


@pytest.mark.slow
def test_the_runnable_shell_blocks_run_as_written(tmp_path: Path) -> None:
    blocks = runnable_blocks()
    assert len(blocks) >= 3, "the runnable marker is gone from the docs"
    shutil.copy(REPO / "train.py", tmp_path / "train.py")  # `python train.py` as in a clone
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "MPLBACKEND": "Agg",
        "PYTHONUNBUFFERED": "1",
    }
    for name in ("MLFLOW_TRACKING_URI", "SER_ROOT", "VIRTUAL_ENV"):
        env.pop(name, None)
    for page, block in blocks:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert result.returncode == 0, f"{page}:\n{block}\n{result.stderr[-3000:]}"
