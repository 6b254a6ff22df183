"""Discovery, isolation of broken plugins, the registry's checks."""

import json

import pytest

from dife_core import hookimpl
from dife_core.errors import NotFoundError, PluginError
from dife_core.types import Metric

from .plugin_fixtures import make_dist, run_dife


def _metric(name):
    return Metric(name=name, formula="x", compute=lambda: 0.0)


def test_list_plugins_json_lists_first_party_plugins_sorted():
    r = run_dife("list-plugins", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    names = [d["name"] for d in data]
    assert names == sorted(names)
    assert "dife-openclip" in names
    for d in data:
        assert set(d) == {"name", "version", "hooks", "provides", "error"}


def test_all_includes_builtins():
    r = run_dife("list-plugins", "--json", "--all")
    names = [d["name"] for d in json.loads(r.stdout)]
    assert "dife_core.builtins.commands" in names


def test_broken_plugin_is_reported_and_the_rest_works(tmp_path):
    make_dist(tmp_path, "dife-broken", "dife_broken", "raise ImportError('no such thing')\n")
    r = run_dife("--help", pythonpath=[tmp_path])
    assert r.returncode == 0
    assert "list-plugins" in r.stdout
    r = run_dife("list-plugins", "--json", pythonpath=[tmp_path])
    assert r.returncode == 0, r.stderr
    data = {d["name"]: d for d in json.loads(r.stdout)}
    assert "no such thing" in data["dife-broken"]["error"]
    assert data["dife-broken"]["version"] == "1.2.3"
    assert data["dife-openclip"]["error"] is None
    assert "dife-broken" in r.stderr and r.stderr.count("\n") >= 1
    r = run_dife("list-plugins", pythonpath=[tmp_path], env={"COLUMNS": "200"})
    assert r.returncode == 0 and "no such thing" in r.stdout


def test_plugin_raising_in_hook_or_registering_wrong_type_is_isolated(tmp_path):
    make_dist(tmp_path, "dife-raises", "dife_raises", """
        from dife_core import hookimpl
        @hookimpl
        def register_metrics(register):
            raise RuntimeError("kaboom")
    """)
    make_dist(tmp_path, "dife-wrongtype", "dife_wrongtype", """
        from dife_core import hookimpl
        @hookimpl
        def register_interfaces(register):
            register("not an interface")
    """)
    r = run_dife("list-plugins", "--json", pythonpath=[tmp_path])
    assert r.returncode == 0, r.stderr
    data = {d["name"]: d for d in json.loads(r.stdout)}
    assert "kaboom" in data["dife-raises"]["error"]
    assert "expected dife_core.types.Interface" in data["dife-wrongtype"]["error"]


def test_strict_mode_reraises(tmp_path):
    make_dist(tmp_path, "dife-broken", "dife_broken", "raise ImportError('strict please')\n")
    r = run_dife("list-plugins", "--json", pythonpath=[tmp_path], env={"DIFE_STRICT_PLUGINS": "1"})
    assert r.returncode != 0
    assert "strict please" in r.stderr


def test_load_plugins_selects_a_subset(tmp_path):
    r = run_dife("list-plugins", "--json", env={"DIFE_LOAD_PLUGINS": ""})
    assert json.loads(r.stdout) == []
    r = run_dife("list-plugins", "--json", env={"DIFE_LOAD_PLUGINS": "openclip"})
    assert [d["name"] for d in json.loads(r.stdout)] == ["dife-openclip"]


def test_duplicate_names_are_refused_naming_both_plugins(register_plugin):
    class A:
        @hookimpl
        def register_metrics(self, register):
            register(_metric("same-name"))

    class B:
        @hookimpl
        def register_metrics(self, register):
            register(_metric("same-name"))

    register_plugin(A(), "plugin-a")
    register_plugin(B(), "plugin-b")
    from dife_core.plugins import get_registry

    with pytest.raises(PluginError) as e:
        get_registry().all("metrics")
    assert "plugin-a" in str(e.value) and "plugin-b" in str(e.value)


def test_misspelt_hook_is_an_error(register_plugin):
    class Typo:
        @hookimpl
        def register_metric(self, register):  # missing "s"
            pass

    with pytest.raises(PluginError, match="unknown hook"):
        register_plugin(Typo(), "typo")
    from dife_core.plugins import get_registry

    assert "typo" not in get_registry().infos


def test_unknown_name_lists_what_is_available(register_plugin):
    class P:
        @hookimpl
        def register_metrics(self, register):
            register(_metric("known-metric"))

    register_plugin(P(), "p")
    from dife_core.plugins import get_registry

    with pytest.raises(NotFoundError, match="known-metric"):
        get_registry().get("metrics", "unknown-metric")


def test_register_plugin_fixture_unregisters(register_plugin):
    from dife_core.plugins import get_registry

    class P:
        @hookimpl
        def register_metrics(self, register):
            register(_metric("temporary-metric"))

    register_plugin(P(), "temporary")
    assert "temporary-metric" in get_registry().all("metrics")


def test_previous_test_left_nothing_behind():
    from dife_core.plugins import get_registry

    assert "temporary-metric" not in get_registry().all("metrics")
    assert "temporary" not in get_registry().infos


def test_cli_and_listing_do_not_import_torch():
    for args in (("--help",), ("list-plugins", "--json"), ("list-plugins",)):
        r = run_dife(*args, importtime=True)
        assert r.returncode == 0, r.stderr
        imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if "|" in line}
        assert "torch" not in imported, f"dife {' '.join(args)} imported torch"
        assert not any(m.startswith(("open_clip", "transformers")) for m in imported)


def test_user_errors_are_one_paragraph_without_traceback(tmp_path):
    make_dist(tmp_path, "dife-failing-cmd", "dife_failing_cmd", """
        from dife_core import hookimpl
        from dife_core.errors import InvalidInputError
        @hookimpl
        def register_commands(cli):
            @cli.command("fail-please")
            def fail():
                raise InvalidInputError("the spec at x.toml has no [audit] table.")
            @cli.command("crash-please")
            def crash():
                raise ZeroDivisionError("oops")
    """)
    r = run_dife("fail-please", pythonpath=[tmp_path])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("Error: the spec at x.toml has no [audit] table.")
    r = run_dife("crash-please", pythonpath=[tmp_path])
    assert r.returncode == 1 and "Traceback" not in r.stderr and "--debug" in r.stderr
    r = run_dife("--debug", "crash-please", pythonpath=[tmp_path])
    assert "Traceback" in r.stderr


def test_python_m_dife_core_is_the_same_cli():
    r = run_dife("--version")
    assert r.returncode == 0 and "dife" in r.stdout
