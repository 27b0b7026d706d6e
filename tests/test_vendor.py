"""The libraries the site serves from docs/assets/vendor/ are the npm packages pinned in package.json."""
from __future__ import annotations

import json

import pytest

from .conftest import ROOT

NODE = ROOT / "node_modules"
VENDOR = ROOT / "docs" / "assets" / "vendor"


def installed(package: str) -> str:
    manifest = NODE / package / "package.json"
    assert manifest.is_file(), f"{manifest} is missing: run `npm ci` (.ci/run does)"
    return json.loads(manifest.read_text(encoding="utf-8"))["version"]


def test_vendored_minisearch_is_the_pinned_package():
    pinned = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))["dependencies"]["minisearch"]
    assert installed("minisearch") == pinned
    original = (NODE / "minisearch/dist/umd/index.js").read_text(encoding="utf-8")
    # Vendored without its source-map comment (the map is not shipped).
    expected = "\n".join(l for l in original.split("\n") if not l.startswith("//# sourceMappingURL="))
    assert (VENDOR / "minisearch/minisearch.js").read_text(encoding="utf-8") == expected


@pytest.mark.parametrize("language", ["en", "ru"])
def test_vendored_stemmers_wrap_the_pinned_package(language):
    pinned = json.loads((ROOT / "package.json").read_text(encoding="utf-8"))["dependencies"]["@orama/stemmers"]
    assert installed("@orama/stemmers") == pinned
    original = (NODE / f"@orama/stemmers/dist/{language}.cjs").read_text(encoding="utf-8")
    vendored = (VENDOR / f"stemmers/{language}.js").read_text(encoding="utf-8")
    assert f"@orama/stemmers {pinned}, dist/{language}.cjs" in vendored.splitlines()[0]
    assert original in vendored
