"""Each notebook runs on its own with nbdev_test: the second half of them (see tests/test_nbdev.py)."""
import pytest
from test_nbdev import NOTEBOOKS, run_standalone

@pytest.mark.parametrize('nb', NOTEBOOKS[1::2])
def test_nbdev_test_runs_each_notebook_standalone(nb): run_standalone(nb)
