"""man/: the pages are generated from the sources of --help and of the config's docs
(man/make-man.py), so they cannot drift; and they render without a groff warning."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

MAN = Path(__file__).resolve().parents[2] / "man"
_spec = importlib.util.spec_from_file_location("make_man", MAN / "make-man.py")
assert _spec is not None and _spec.loader is not None
make_man = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_man)


@pytest.mark.parametrize("page", sorted(make_man.PAGES))
def test_page_is_generated_from_the_sources(page):
    assert (MAN / page).read_text() == make_man.PAGES[page](), \
        "run .venv/bin/python man/make-man.py"


def test_every_command_option_and_config_key_is_in_the_pages():
    from prioomd import config
    p8, p5 = (MAN / "prioomd.8").read_text(), (MAN / "prioomd.toml.5").read_text()
    for opt in ("\\-\\-dry\\-run", "\\-\\-exit\\-after", "\\-\\-use\\-priority\\-oom",
                ".SS check\\-config", "\\-\\-version"):
        assert opt in p8, opt
    for key in config.schema():
        assert f"\\fB{make_man.esc(key.name)}\\fR" in p5, key


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff is not installed")
@pytest.mark.parametrize("page", sorted(make_man.PAGES))
def test_page_renders_without_warnings(page):
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(MAN / page)], capture_output=True,
                       text=True, check=False)
    assert r.returncode == 0 and r.stderr == "", r.stderr
