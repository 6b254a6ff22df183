import pytest


@pytest.fixture
def hand(register_plugin):
    """The hand-made loader, world and triggers, registered for one test."""
    import torch

    from . import handmade

    torch.set_num_threads(min(torch.get_num_threads(), 2))
    handmade.CALLS.clear()
    register_plugin(handmade.HandPlugin(), "hand-test")
    return handmade
