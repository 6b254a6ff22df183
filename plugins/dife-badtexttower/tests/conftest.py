"""The easy test world and its clean tiny CLIP (memoised: trained once per test session)."""

import pytest


@pytest.fixture
def world():
    from dife_backdoors.testing import easy_world

    return easy_world()


@pytest.fixture
def clean():
    from dife_backdoors.testing import easy_clean

    return easy_clean()
