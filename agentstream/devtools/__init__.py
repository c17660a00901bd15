"""Tools for a developer's machine and CI: the local broker, the simulator, the soak harness."""
