"""Coordinator: etcd leader election with fencing. Arrives with issue 4; nothing runs here yet."""
