"""Real-binary helpers shared by the tests and the benchmark: registry processes, OCI image
maker, skopeo, upstream stand-ins and the real engines."""
