"""Every recipe runs the template's stage driver through links, never a copy of it (a copy
would drift: one recipe fixed, the other not)."""

from pathlib import Path

import pytest

EGS2 = Path(__file__).parents[2] / "egs2"
TEMPLATE = EGS2 / "TEMPLATE" / "distill1"
RECIPES = sorted(p / "distill1" for p in EGS2.iterdir()
                 if p.name != "TEMPLATE" and (p / "distill1").is_dir())


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.parent.name)
def test_the_recipe_links_the_template_driver(recipe):
    for name in ("distill.sh", "path.sh", "scripts"):
        link = recipe / name
        assert link.is_symlink(), f"{link} is not a link to {TEMPLATE / name}"
        assert link.resolve() == (TEMPLATE / name).resolve()


def test_there_are_recipes():
    assert {p.parent.name for p in RECIPES} >= {"demo", "librispeech"}
