"""PyTorch models: float DelRec training and (later) the fixed-point reference.

Never imports :mod:`delrec.hw` or :mod:`delrec.sim`.
"""
