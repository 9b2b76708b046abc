"""Amaranth gateware of the delay-learning core (no torch, no golden imports)."""
