"""Discovery service: probes instances, crawls topologies, publishes snapshots."""
