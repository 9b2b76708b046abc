"""Model compiler, host protocol and driver (never imports sim)."""
