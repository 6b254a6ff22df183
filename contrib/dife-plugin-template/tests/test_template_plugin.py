import pytest

from dife_plugin_template.plugin import top1_margin


def test_top1_margin_positive_when_target_wins():
    assert top1_margin([[0.9, 0.1, 0.2], [0.5, 0.4, 0.0]], 0) == (0.7 + 0.1) / 2


def test_top1_margin_negative_when_target_loses():
    assert top1_margin([[0.1, 0.9]], 0) < 0


def test_registers_metric():
    from dife_core.types import Metric
    from dife_plugin_template import plugin

    registered = []
    plugin.register_metrics(register=registered.append)
    assert [m.name for m in registered] == ["template-top1-margin"]
    assert isinstance(registered[0], Metric)
    assert registered[0].compute([[1.0, 0.0]], 0) == 1.0


# -- against the installed plugin (docs/plugin-authoring.md, "Test it") ---------------

def _installed() -> bool:
    from importlib import metadata

    try:
        metadata.distribution("dife-plugin-template")
    except metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed(), reason="the template is not installed (pip install -e .)")
def test_installed_plugin_is_discovered(fresh_registry):
    assert fresh_registry().owner("metrics", "template-top1-margin") == "dife-plugin-template"


@pytest.fixture
def no_autoload(monkeypatch, fresh_registry):
    monkeypatch.setenv("DIFE_DISABLE_PLUGIN_AUTOLOAD", "1")  # installed plugins, this one too, stay out
    return fresh_registry


def test_hooks_register_the_metric(no_autoload, register_plugin):
    from dife_plugin_template import plugin

    register_plugin(plugin, "my-plugin")
    assert no_autoload().owner("metrics", "template-top1-margin") == "my-plugin"
