"""Plugin discovery through real entry points: isolation, strict mode, disabling, duplicates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import finetuner
from finetuner import plugins
from tests.core.helpers import INSTALLED, run_cli


def test_dummy_plugin_is_discovered_through_its_entry_point():
    assert "dummy" in INSTALLED
    names = [s.name for s in finetuner.list_models()]
    assert {"dummy-text", "dummy-image"} <= set(names)
    spec = finetuner.get_spec("dummy-txt")  # alias
    assert spec.name == "dummy-text" and spec.plugin == "dummy"


def test_broken_plugin_is_reported_and_others_keep_working():
    with pytest.warns(RuntimeWarning, match=r"'broken'.*ImportError"):
        infos = {i.name: i for i in plugins.plugin_infos()}
    assert infos["broken"].status == "failed"
    assert "not installed (on purpose)" in infos["broken"].error
    assert infos["dummy"].status == "ok" and infos["dummy"].models == 2


def test_strict_mode_raises(monkeypatch):
    monkeypatch.setenv("FINETUNER_STRICT_PLUGINS", "1")
    with pytest.raises(finetuner.PluginError, match="broken"):
        finetuner.list_models()


def test_disabled_plugins_are_skipped(monkeypatch):
    monkeypatch.setenv("FINETUNER_DISABLE_PLUGINS", "dummy, broken")
    infos = {i.name: i.status for i in plugins.plugin_infos()}
    assert infos["dummy"] == infos["broken"] == "disabled"
    assert not any(s.plugin == "dummy" for s in finetuner.list_models())


class _Duplicate:
    @finetuner.hookimpl
    def finetuner_register_backbones(self, register):
        register(finetuner.BackboneSpec("mine", "text-to-text", 8, "x", "y", build=lambda **_: None))
        register(finetuner.BackboneSpec("other", "text-to-text", 8, "x", "y", build=lambda **_: None, aliases=("dummy-text",)))


def test_duplicate_name_is_held_by_neither_plugin():
    with pytest.warns(RuntimeWarning, match=r"'dummy-text' is registered by two plugins: 'dummy'.*'dup'"):
        plugins.register_plugin(_Duplicate(), "dup")
    infos = plugins.get_manager().plugins
    assert infos["dup"].status == infos["dummy"].status == "ok"
    assert "'dummy-text' is also registered by 'dup'" in infos["dummy"].error
    with pytest.raises(finetuner.PluginError, match=r"'dummy-text' is registered by two plugins: 'dummy'.*'dup'"):
        finetuner.get_spec("dummy-text")
    names = {s.name for s in finetuner.list_models()}
    assert {"mine", "other", "dummy-image"} <= names and "dummy-text" not in names  # other names keep working
    assert finetuner.get_spec("dummy-txt").plugin == "dummy"  # an uncontested alias still resolves


class _RaisingHook:
    @finetuner.hookimpl
    def finetuner_register_backbones(self, register):
        raise RuntimeError("boom in hook")


def test_plugin_whose_hook_raises_is_isolated():
    with pytest.warns(RuntimeWarning, match="'raiser'.*boom in hook"):
        plugins.register_plugin(_RaisingHook(), "raiser")
    assert plugins.get_manager().plugins["raiser"].status == "failed"
    assert finetuner.get_spec("dummy-image").plugin == "dummy"


def test_unknown_model_lists_close_matches():
    with pytest.raises(finetuner.UnknownNameError, match="Did you mean: dummy-text"):
        finetuner.get_spec("dummy-tex")


def test_builder_failure_names_plugin_and_model():
    class Failing:
        @finetuner.hookimpl
        def finetuner_register_backbones(self, register):
            register(finetuner.BackboneSpec("fails", "text-to-text", 8, "x", "y", build="no_such_module_xyz:build"))

    plugins.register_plugin(Failing(), "failing")
    with pytest.raises(finetuner.PluginError, match=r"plugin 'failing' failed to build model 'fails'"):
        finetuner.build_model("fails")


def _write_entry_point_plugin(root: Path, name: str, code: str) -> None:
    """Make an importable module plus a dist-info declaring it in the finetuner group."""
    (root / f"{name}.py").write_text(code)
    dist = root / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[finetuner]\n{name} = {name}\n")


@pytest.mark.parametrize("rival", ["aaa_clash", "zzz_clash"])  # loads before / after the real plugin
def test_duplicate_across_real_entry_points_wins_in_neither_order(tmp_path, rival):
    _write_entry_point_plugin(
        tmp_path,
        rival,
        textwrap.dedent(
            """
            import finetuner

            @finetuner.hookimpl
            def finetuner_register_backbones(register):
                register(finetuner.BackboneSpec("dummy-image", "image-to-image", 4, "CNN", "clash", build="x:y"))
            """
        ),
    )
    env = {"PYTHONPATH": str(tmp_path)}
    result = run_cli("plugins", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows[rival]["status"] == rows["dummy"]["status"] == "ok"
    assert f"'{rival}'" in rows["dummy"]["error"] and "'dummy'" in rows[rival]["error"]
    code = "import finetuner; finetuner.build_model('dummy-image')"
    build = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, timeout=120)
    assert build.returncode == 1
    assert "finetuner.errors.PluginError" in build.stderr and "'dummy'" in build.stderr and f"'{rival}'" in build.stderr
    strict = run_cli("models", env={**env, "FINETUNER_STRICT_PLUGINS": "1", "FINETUNER_DISABLE_PLUGINS": "broken"})
    assert strict.returncode == 1 and "registered by two plugins" in strict.stderr


def test_listing_imports_no_deep_learning_library():
    code = (
        "import sys, finetuner\n"
        "finetuner.describe_models()\n"
        "finetuner.list_models('image-to-image')\n"
        "from finetuner.cli import main\n"
        "main(['models']); main(['plugins'])\n"
        "heavy = [m for m in ('torch', 'torchvision', 'timm', 'transformers') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
