"""``make bench``: throughput and latency, each beside a baseline measured in the same run."""
