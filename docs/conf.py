"""The documentation site: Sphinx reads the Markdown pages (docs/*.md) through MyST-Parser, and
autodoc writes the API reference (docs/reference/) from the docstrings of the public modules.

`make docs` builds it strictly (`sphinx-build -W --keep-going -n`): a link to a missing page or
heading, a missing picture, a page outside the navigation and a reference to a `ser` name that
no longer exists are warnings, and every warning fails the build. No step needs the network."""

from __future__ import annotations

from typing import Any

from docutils import nodes, utils
from myst_parser.mdit_to_docutils.sphinx_ import SphinxRenderer
from myst_parser.parsers.mdit import create_md_parser
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

project = "ser"
author = "ser"
copyright = "ser contributors"

extensions = ["myst_parser", "sphinx.ext.autodoc"]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# Markdown: `page.md#heading` links resolve to headings of every level, slugged as GitHub does,
# so the same links work on GitHub and on the site; a missing heading is a warning.
myst_heading_anchors = 6

# A link to a page or heading that does not exist, a picture that is not there, a page outside
# the navigation, a reference to an unknown Python name: all warnings, and -W fails on them.
nitpicky = True
# Names from other libraries (torch.Tensor, numpy.ndarray, DictConfig, ...) have no page here;
# references to them are shown as plain text. A `ser.` name must resolve.
nitpick_ignore_regex = [
    (r"py:.*", r"(?!ser\.).*"),
    # Type variables (`R` in `Callable[P, R]`) are not documented objects.
    (r"py:class", r"ser\.[\w.]+\.[A-Z]"),
]

# The API reference. The docstrings are Markdown (prose, `code` in backticks, indented examples),
# so each is parsed by MyST like the pages (see setup below), not as reStructuredText.
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "signature"
autoclass_content = "both"
# Only the docstrings written here: an override of a Lightning or Gymnasium method does not
# repeat the parent's docstring (written for their Sphinx sites, with their roles and labels).
autodoc_inherit_docstrings = False
add_module_names = False
# A longer signature is shown one parameter a line (the length counts full type names).
python_maximum_signature_line_length = 100

html_theme = "pydata_sphinx_theme"
html_title = "ser"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
    "primary_sidebar_end": [],
    "navbar_center": [],
}
# The left sidebar shows the whole site, as the navigation of docs/index.md orders it (the
# theme's own shows only the pages under the current one, and the top-level pages in the header).
templates_path = ["_templates"]
html_sidebars = {"**": ["site-nav"]}
html_static_path = ["_static"]
html_css_files = ["wide.css"]
html_show_sourcelink = False


class MarkdownDocstring(SphinxDirective):
    """Its content, one docstring, parsed as MyST Markdown into the page."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        document = utils.new_document(self.state.document["source"], self.state.document.settings)
        parser = create_md_parser(self.env.myst_config, SphinxRenderer)
        # A docstring's `<root>/<label>` is text, not an HTML tag to pass through.
        parser.disable(["html_inline", "html_block"])
        parser.options["document"] = document
        parser.render("\n".join(self.content))
        return list(document.children)


def markdown_docstring(
    app: Sphinx, what: str, name: str, obj: Any, options: Any, lines: list[str]
) -> None:
    """Hands a docstring autodoc has read to MarkdownDocstring instead of the rST parser."""
    if any(line.strip() for line in lines):
        lines[:] = [".. markdown-docstring::", "", *(f"   {line}" for line in lines)]


def setup(app: Sphinx) -> None:
    app.add_directive("markdown-docstring", MarkdownDocstring)
    app.connect("autodoc-process-docstring", markdown_docstring)
