"""The documentation: the README stays one screen, its links and pictures resolve, the site
builds with no warning (and a broken link, anchor, picture or API name does fail it), and every
shell block marked `<!-- runnable -->` runs as written on the synthetic corpus."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from myst_parser.slugs import github_slugify

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
SPHINX_BUILD = str(Path(sys.executable).with_name("sphinx-build"))
# As `make docs` runs it, and -q: only the warnings on stderr.
# --no-color: plain lines to parse (Sphinx colours its warnings where CI=true or FORCE_COLOR).
SPHINX_OPTIONS = ["-E", "-W", "--keep-going", "-n", "-q", "--no-color", "-b", "html"]
# The marker: an HTML comment on the line before a ```bash fence (invisible on GitHub and on
# the site). The blocks run in one scratch folder, README first, then the pages in nav order,
# so a block may use what an earlier one wrote (the getting-started run saves the model the
# "Using a trained model" block uses).
RUNNABLE = re.compile(r"^<!-- runnable -->\n```bash\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
TOCTREE = re.compile(r"^```\{toctree\}\n(.*?)^```", re.S | re.M)
# The links the build test appends to a copy of docs/models.md, and what the build must then
# name: a missing page, a missing heading of another page, a missing picture, a renamed API name.
BROKEN = {
    "[a](nowhere.md)": "nowhere.md",
    "[b](results.md#no-such-heading)": "no-such-heading",
    "![c](img/no_such_picture.png)": "no_such_picture.png",
    "[d](#ser.models.no_such_function)": "ser.models.no_such_function",
}


def nav_pages(page: Path) -> list[Path]:
    """A page, then the pages of its toctree (and theirs), in order: the site's navigation."""
    found = [page]
    for block in TOCTREE.findall(page.read_text()):
        for entry in block.splitlines():
            if entry.strip() and not entry.startswith(":"):
                found += nav_pages(page.parent / f"{entry.strip()}.md")
    return found


def pages() -> list[Path]:
    """README.md, then the site's pages in the order of the navigation."""
    return [README, *nav_pages(DOCS / "index.md")]


def runnable_blocks() -> list[tuple[str, str]]:
    return [
        (str(page.relative_to(REPO)), block)
        for page in pages()
        for block in RUNNABLE.findall(page.read_text())
    ]


def headings(page: Path) -> set[str]:
    """The anchors of a page's headings, as GitHub and the site (MyST) make them."""
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    found = re.findall(r"^#{1,6} (.+)$", text, re.M)
    return {github_slugify(re.sub(r"[`*]", "", title).strip()) for title in found}


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """One build (about 16 s, most of it importing ser and torch for the API reference) of a copy
    of docs/ that differs in one thing: docs/models.md ends with the links of BROKEN. Returns the
    site, the warnings about the real pages and those about the broken links."""
    root = tmp_path_factory.mktemp("docs")
    shutil.copytree(DOCS, root / "docs", ignore=shutil.ignore_patterns("_build"))
    page = root / "docs" / "models.md"
    original = page.read_text()
    page.write_text(original + "\n" + "\n".join(BROKEN) + "\n")
    broken_lines = range(original.count("\n") + 1, original.count("\n") + len(BROKEN) + 3)
    result = subprocess.run(
        [SPHINX_BUILD, *SPHINX_OPTIONS, str(root / "docs"), str(root / "site")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode != 0, "the build passed with broken links"
    real, broken = [], []
    for line in result.stderr.splitlines():
        where = re.match(rf"{re.escape(str(page))}:(\d+):", line)
        (broken if where and int(where[1]) in broken_lines else real).append(line)
    return root / "site", "\n".join(real), "\n".join(broken)


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


def test_the_site_builds_with_no_warning(build: tuple[Path, str, str]) -> None:
    site, real, _ = build
    assert not real, real[-3000:]
    assert (site / "index.html").is_file()
    assert "ser.inference.Recognizer" in (site / "reference" / "inference.html").read_text()


def test_a_broken_link_anchor_picture_or_api_reference_fails_the_build(
    build: tuple[Path, str, str],
) -> None:
    _, _, broken = build
    for name in BROKEN.values():
        assert name in broken, f"the build did not name {name}:\n{broken}"


@pytest.mark.slow
def test_the_runnable_shell_blocks_run_as_written(tmp_path: Path) -> None:
    blocks = runnable_blocks()
    assert len(blocks) >= 2, "the runnable marker is gone from the docs"
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
