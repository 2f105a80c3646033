"""trio-vit hardware: Amaranth components of the Trio-ViT accelerator (paper Sec. V).

``hw.units`` holds the arithmetic units (log2 quantizer, requant, shifter array, adder tree,
packed dual multiplier); ``hw.registry`` lists everything the CLI can generate;
``python -m hw`` writes Verilog and resource estimates (see docs/hw-units.md).
"""
