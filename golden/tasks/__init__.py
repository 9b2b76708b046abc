"""Built-in tasks behind one dataset interface yielding ``[T, B, C]`` spikes and labels."""
