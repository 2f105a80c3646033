"""cocotb testbenches of the R-MAC engine and the MAT engine, and their shared schedules."""
