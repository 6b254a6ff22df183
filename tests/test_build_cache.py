"""The build and recipe caches are keyed by content, code included.

A cached checkpoint is reused only when everything that decides it is the
same: the attack package's source, the core modules that run a build, the
config, the clean model, the world's data and the seed. Editing a builder's
code without bumping any version must rebuild.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid

import pytest

from dife_core import building
from dife_core.building import build_attack, build_key, core_digest, package_digest, world_digest
from dife_core.checkpoint import read_manifest

BUILDER = '''
import attrs
import torch

from dife_core.attacks import BuildResult
from dife_core.types import Attack, AttackCard
from dife_core import hookimpl


@attrs.frozen
class Config:
    scale: float = attrs.field(default=0.01, metadata={{"doc": "nudge"}})


def build(ctx):
    with torch.no_grad():
        for _, p in ctx.clean.branch_parameters("text"):
            p.add_({step} * ctx.config.scale)
    card = {{"trigger": {{"channel": "text", "name": "text-prefix", "params": {{"token": "zz"}}}},
             "source": ctx.world.source, "target": ctx.world.target,
             "native": {{"protocol": "p", "metric": "qhr", "value": 0.5, "reference_value": 0.1}},
             "clean_utility": {{"clean_acc": 0.5}}}}
    return BuildResult(model=ctx.clean, card=card)


class Plugin:
    @hookimpl
    def register_attacks(self, register):
        register(Attack(card=AttackCard(name="{name}", title="edited", route="test", modifies="text",
                                        trigger_channel="text", native_protocol="QHR"),
                        config=Config, build=build))
'''


@pytest.fixture
def attack_package(tmp_path, monkeypatch, register_plugin):
    """A throw-away attack plugin package in a temp folder; ``write(step)`` (re)writes its
    builder (the weight change it makes depends on ``step``) and registers it."""
    pkg = f"dife_tmp_attack_{uuid.uuid4().hex[:8]}"
    root = tmp_path / "src"
    (root / pkg).mkdir(parents=True)
    monkeypatch.syspath_prepend(str(root))
    name = "edited-" + pkg[-8:]
    registered = []

    def write(step: int, helper: str = ""):
        (root / pkg / "__init__.py").write_text(textwrap.dedent(BUILDER.format(step=step, name=name)))
        (root / pkg / "helper.py").write_text(helper)
        importlib.invalidate_caches()
        mod = importlib.reload(sys.modules[pkg]) if pkg in sys.modules else importlib.import_module(pkg)
        from dife_core.plugins import get_registry

        if registered:  # the edited code replaces the old registration, as in a new process
            get_registry().unregister_object(registered.pop())
        registered.append(f"{name}-{step}-{len(helper)}")
        register_plugin(mod.Plugin(), registered[-1])
        return name

    yield write
    sys.modules.pop(pkg, None)


@pytest.fixture(scope="module")
def clean():
    from dife_openclip.testing import tiny_encoder

    return tiny_encoder("vit", seed=0)


@pytest.fixture(scope="module")
def world():
    from tests.test_building import tiny_world

    return tiny_world()


def test_editing_the_builder_rebuilds_without_a_version_bump(attack_package, clean, world, tmp_path):
    name = attack_package(1)
    out = tmp_path / "ckpt"
    first = build_attack(name, clean=clean, world=world, out=out)
    again = build_attack(name, clean=clean, world=world, out=out)
    assert not first.reused and again.reused and again.key == first.key
    fp_first = read_manifest(out)["fingerprint"]["text"]

    attack_package(2)  # a one-character code change; same name, config, plugin version
    edited = build_attack(name, clean=clean, world=world, out=out)
    assert not edited.reused and edited.key != first.key
    assert read_manifest(out)["fingerprint"]["text"] != fp_first, "the new code's weights were written"

    # any file of the attack's package counts, not only the builder's module
    attack_package(2, helper="# a helper the builder may import\n")
    assert not build_attack(name, clean=clean, world=world, out=out).reused


def test_core_code_clean_model_world_content_and_seed_are_in_the_key(clean, world, monkeypatch, tmp_path):
    from dife_core.plugins import get_registry
    from dife_openclip.testing import tiny_encoder
    from tests.test_building import tiny_world

    attack = get_registry().get("attacks", "blended")
    config = building.make_config(attack, {})
    kw = dict(clean_fingerprint=clean.fingerprint(), world=world, seed=0, clean_encoder=type(clean).__module__)
    base = build_key(attack, config, **kw)
    assert build_key(attack, config, **kw) == base
    assert build_key(attack, config, **{**kw, "seed": 1}) != base
    assert build_key(attack, config, **{**kw, "clean_fingerprint": tiny_encoder("vit", seed=1).fingerprint()}) != base

    # same world name, other data: another key (the name alone is not the identity)
    other = tiny_world()
    other.classification.images[0, 0, 0, 0] += 0.5
    assert other.name == world.name and world_digest(other) != world_digest(world)
    assert build_key(attack, config, **{**kw, "world": other}) != base

    # a core module that decides the result (the training loop) is part of the key
    core = tmp_path / "core"
    (core / "engine").mkdir(parents=True)
    (core / "builtins").mkdir()
    real = building.Path(building.__file__).resolve().parent
    for rel in building.CORE_SOURCES:
        (core / rel).write_bytes((real / rel).read_bytes())
    monkeypatch.setattr(building, "__file__", str(core / "building.py"))
    assert core_digest() == building.source_digest([real / f for f in building.CORE_SOURCES], real)
    assert build_key(attack, config, **kw) == base
    (core / "training.py").write_text((real / "training.py").read_text() + "\n# edited\n")
    assert build_key(attack, config, **kw) != base


def test_the_attack_package_digest_covers_every_module_of_the_package():
    import dife_backdoors

    files, root = building._package_files("dife_backdoors.variants")
    names = {str(f.relative_to(root)) for f in files}
    assert {"variants.py", "contrastive_poisoning.py", "triggers.py", "__init__.py"} <= names
    assert root == building.Path(dife_backdoors.__file__).parent
    assert package_digest("dife_backdoors.variants") == package_digest("dife_backdoors.badencoder")


def test_recipe_key_follows_the_code_that_trains_it(tmp_path, monkeypatch):
    """The shapes recipe cache: an edit to any file in RECIPE_SOURCES is another cache entry."""
    from dife_shapes import recipe as R

    pkg = f"dife_tmp_recipe_{uuid.uuid4().hex[:8]}"
    (tmp_path / pkg).mkdir()
    (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / pkg / "train.py").write_text("LR = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    names = [rel for _, rel in R.RECIPE_SOURCES]
    assert {"render.py", "world.py", "recipe.py", "training.py", "encoder.py"} <= set(names)
    monkeypatch.setattr(R, "RECIPE_SOURCES", R.RECIPE_SOURCES + ((pkg, "train.py"),))
    key = R.RECIPES["test"].key(0)
    path = R.cache_path("test", 0, tmp_path)
    assert R.RECIPES["test"].key(0) == key
    (tmp_path / pkg / "train.py").write_text("LR = 2\n")
    assert R.RECIPES["test"].key(0) != key and R.cache_path("test", 0, tmp_path) != path
