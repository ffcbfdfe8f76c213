import random

import pytest
import torch

from hyctas_lightning.search_space import SearchSpace


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture
def small_space() -> SearchSpace:
    """A space small enough for CPU tests but with every op, node kind and all three scales."""
    return SearchSpace(layers=6, fch=4)
