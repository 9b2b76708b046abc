"""delrec: learning delays in spiking neural networks, from PyTorch to FPGA.

Subpackages (each a top-level folder of the repository):

* :mod:`delrec.golden` -- PyTorch models: DelRec training, three-factor rules,
  the bit-exact fixed-point reference of the hardware;
* :mod:`delrec.hw` -- Amaranth gateware;
* :mod:`delrec.sim` -- simulation and co-simulation against the golden model;
* :mod:`delrec.firmware` -- model compiler, host protocol and driver.
"""

__version__ = "0.1.0"
