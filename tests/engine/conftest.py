import pytest


@pytest.fixture
def hand(register_plugin):
    """The hand-made loader, world and triggers, registered for one test."""
    from . import handmade

    # the torch thread count is set once, in the root conftest.py
    handmade.CALLS.clear()
    register_plugin(handmade.HandPlugin(), "hand-test")
    return handmade
