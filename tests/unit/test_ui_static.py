"""The web UI's static files, as shipped in the package: typed ES modules whose imports resolve,
an index that loads only its own assets, no external URL (no CDN), and the DOM hooks the
browser tests rely on (docs/ui.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator_api.ui.routes import PREFIX_MARK, STATIC, asset_path

pytestmark = pytest.mark.unit

MODULES = sorted(STATIC.rglob("*.js"))
IMPORT = re.compile(r"""(?:^|\n)\s*import\s[^;]*?from\s+"([^"]+)";""")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"


def test_every_module_is_type_checked_and_its_imports_resolve() -> None:
    assert {p.name for p in MODULES} >= {"api.js", "live.js", "tree.js", "dialogs.js", "app.js"}
    for module in MODULES:
        text = module.read_text(encoding="utf-8")
        assert text.startswith("// @ts-check\n"), module.name
        for target in IMPORT.findall(text):
            assert target.startswith("./") or target.startswith("../"), (module.name, target)
            assert (module.parent / target).resolve().is_file(), (module.name, target)


def test_the_index_loads_only_its_own_assets() -> None:
    index = (STATIC / "index.html").read_text(encoding="utf-8")
    referenced = re.findall(rf'(?:src|href)="{PREFIX_MARK}/ui/([^"]+)"', index)
    assert set(referenced) == {"app.js", "style.css"}
    for name in referenced:
        assert asset_path(name) is not None


def test_no_asset_points_outside_the_api() -> None:
    for asset in STATIC.rglob("*"):
        if asset.is_file():
            text = asset.read_text(encoding="utf-8").replace(SVG_NAMESPACE, "")
            assert not re.search(r"https?://|//[a-z0-9-]+\.[a-z]", text), asset.name


def test_asset_paths_stay_inside_the_static_folder() -> None:
    assert asset_path("app.js") == (STATIC / "app.js").resolve()
    assert asset_path("pages/cluster.js") == (STATIC / "pages/cluster.js").resolve()
    for bad in ("", "../routes.py", "pages/../../routes.py", "/etc/passwd", "pages", "a\\b.js"):
        assert asset_path(bad) is None, bad
    assert asset_path("nothing.js") is None
    assert isinstance(STATIC, Path)


def test_the_dom_hooks_of_the_browser_tests_are_there() -> None:
    shipped = "".join(p.read_text(encoding="utf-8") for p in STATIC.rglob("*") if p.is_file())
    for hook in (
        'data-testid="topology"',
        'data-testid="confirm"',
        'data-testid="confirm-ok"',
        'data-testid="confirm-type"',
        'data-testid="notice"',
        '"data-testid": "actions"',
        '"data-drop"',
        "document.body.dataset.live",
        "__lastRender",
        '"data-testid": "galera"',
        "galera-badge",
    ):
        assert hook in shipped, hook
