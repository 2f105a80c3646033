"""cocotb testbenches of the system top level (``hw.system``): AXI models from cocotbext-axi."""
