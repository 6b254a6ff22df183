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
