"""The documentation's sources stay complete and in step with the code (no Sphinx build here;
``bash scripts/docs.sh`` builds the site with warnings as errors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import flashmd
import flashmd.ase

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.mark.parametrize(
    ("module", "names"),
    [("flashmd", flashmd.__all__), ("flashmd.ase", flashmd.ase.__all__)],
)
def test_every_public_name_is_in_the_api_reference(module, names):
    api = (DOCS / "api.rst").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\.\. auto\w+:: ([\w.]+)", api, flags=re.MULTILINE))
    missing = [name for name in names if f"{module}.{name}" not in documented]
    assert not missing, f"add {missing} to docs/api.rst (an autodoc directive each)"


def test_public_names_have_docstrings():
    for name in flashmd.ase.__all__:
        assert (getattr(flashmd.ase, name).__doc__ or "").strip(), name
    assert (flashmd.load_model.__doc__ or "").strip()


def test_the_presets_table_is_the_presets():
    from flashmd.models.config import PRESETS

    page = (DOCS / "guide" / "training.md").read_text(encoding="utf-8")
    fields = ("n_scalars", "n_tensors", "lmax", "n_layers", "n_radial", "radial_hidden")
    for name, preset in PRESETS.items():
        row = next(line for line in page.splitlines() if line.startswith(f"| `{name}` |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert cells[1:7] == [str(preset[field]) for field in fields], (name, row)


def _includes() -> list[tuple[Path, Path, dict[str, str]]]:
    """(page, included file, options) of every MyST ``{include}`` in the docs."""
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        if "_build" in page.parts or page.parent.name == "notebooks":
            continue
        text = page.read_text(encoding="utf-8")
        for block in re.findall(r"```\{include\} ([^\n]+)\n(.*?)```", text, flags=re.DOTALL):
            options = dict(re.findall(r'^:([\w-]+): "?(.*?)"?$', block[1], flags=re.MULTILINE))
            found.append((page, (page.parent / block[0].strip()).resolve(), options))
    return found


def test_included_sections_still_exist():
    """A page that includes part of the README or data/README.md by its headings fails here
    (cheaply, and with the marker named) when a heading it starts or ends at is renamed."""
    includes = _includes()
    assert len(includes) >= 10
    for page, source, options in includes:
        assert source.is_file(), (page, source)
        text = source.read_text(encoding="utf-8")
        for key in ("start-after", "end-before"):
            if key in options:
                assert text.count(options[key]) == 1, (page.name, source.name, options[key])


def test_every_model_card_has_a_page():
    cards = sorted((ROOT / "flashmd" / "pretrained").glob("*.md"))
    assert cards
    included = {source for _, source, _ in _includes()}
    assert {card.resolve() for card in cards} <= included
