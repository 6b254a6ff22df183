"""The easy test world and its clean tiny CLIP (module-scoped: trained once per module)."""

import pytest


@pytest.fixture(scope="module")
def world():
    from dife_backdoors.testing import easy_world

    return easy_world()


@pytest.fixture(scope="module")
def clean(world):
    from dife_backdoors.testing import easy_clean

    return easy_clean(world)
