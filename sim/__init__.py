"""Simulation: cocotb testbenches and co-simulation of hw against golden."""
