"""hw.system.csr.RegisterBlock's Verilog on Icarus and Verilator, with cocotbext-axi's
AxiLiteMaster as the CPU (tb/system/cocotb_csr.py): every RW register written with random
values and byte strobes and read back, RO constants and inputs, W1P pulses, W1C and the
interrupt, 64-bit counter reads, unmapped addresses, random traffic with random AXI pauses.

The expected build-time constants are computed here from the AccelConfig (fields and SHA-256),
independently of hw.system.regmap.config_constants.

One simulator:  .venv/bin/python -m pytest tb/test_csr_rtl.py -k icarus
"""

import hashlib

import pytest

from hw.system.csr import RegisterBlock
from sim.config import PRESETS
from tb.rtl import run_cocotb

pytestmark = pytest.mark.rtl


def _constants(cfg, axi_ports, data_bytes, sems):
    return {"CONFIG_HASH.HASH": int(hashlib.sha256(cfg.to_json().encode()).hexdigest()[:8], 16),
            "CONFIG_NMTS.N": cfg.N, "CONFIG_NMTS.M": cfg.M, "CONFIG_NMTS.T": cfg.T,
            "CONFIG_NMTS.S": cfg.S, "CONFIG_L.L": cfg.L, "CONFIG_L.PACKED": int(cfg.dsp_packing),
            "CONFIG_L.AXI_PORTS": axi_ports, "CONFIG_L.DATA_BYTES": data_bytes,
            "CONFIG_SEMS.IDS": sems}


def test_csr(simulator):
    cfg = PRESETS["paper"]
    block = RegisterBlock(config=cfg, axi_ports=4, data_bytes=16, sems=3000)
    run_cocotb(component=block, name="csr", test_module="tb.system.cocotb_csr",
               simulator=simulator, timeout_s=600,
               params={"constants": _constants(cfg, 4, 16, 3000), "seed": 7, "n": 300})
