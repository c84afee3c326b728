"""Two-stream I3D features: the network, its weights, and chunked extraction."""
