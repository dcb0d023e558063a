"""What ``submit-masters-to-kv-stores`` would write (pure but for the host name lookup).

orchestrator writes each cluster's master to its key-value stores (its own table, Consul,
ZooKeeper) so that proxies and applications can find the writer by cluster alias:

    <KVClusterMasterPrefix>/<alias>           host:port
    <KVClusterMasterPrefix>/<alias>/hostname  host
    <KVClusterMasterPrefix>/<alias>/port      port
    <KVClusterMasterPrefix>/<alias>/ipv4      first IPv4 address of host ("" if none)
    <KVClusterMasterPrefix>/<alias>/ipv6      first IPv6 address of host ("" if none)

This project has no key-value store wired: the API answers the pairs it would write (as
orchestrator answers them), writing nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass

from orchestrator_shared.instance_key import InstanceKey

RESOLVE_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True, slots=True)
class HostAddresses:
    ipv4: str = ""
    ipv6: str = ""


def kv_prefix(setting: str) -> str:
    """orchestrator's reading of ``KVClusterMasterPrefix``: ``/`` stays ``/``, anything else
    gets exactly one trailing slash (``mysql/master`` → ``mysql/master/``)."""
    return setting if setting == "/" else setting.rstrip("/") + "/"


def master_kv_pairs(
    prefix: str, alias: str, master: InstanceKey, addresses: HostAddresses
) -> list[tuple[str, str]]:
    """The pairs of one cluster's master, in orchestrator's order (none without an alias)."""
    if not alias:
        return []
    key = kv_prefix(prefix) + alias
    return [
        (key, str(master)),
        (f"{key}/hostname", master.host),
        (f"{key}/port", str(master.port)),
        (f"{key}/ipv4", addresses.ipv4),
        (f"{key}/ipv6", addresses.ipv6),
    ]


def literal_addresses(host: str) -> HostAddresses | None:
    """The address itself when ``host`` is an IP literal, else None."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if address.version == 4:
        return HostAddresses(ipv4=str(address))
    return HostAddresses(ipv6=str(address))


async def resolve_addresses(host: str) -> HostAddresses:
    """The first IPv4 and IPv6 address of ``host`` (empty when it does not resolve in time)."""
    literal = literal_addresses(host)
    if literal is not None:
        return literal
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            found = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, TimeoutError):
        return HostAddresses()
    ipv4 = next((str(info[4][0]) for info in found if info[0] == socket.AF_INET), "")
    ipv6 = next((str(info[4][0]) for info in found if info[0] == socket.AF_INET6), "")
    return HostAddresses(ipv4=ipv4, ipv6=ipv6)


__all__ = [
    "HostAddresses",
    "kv_prefix",
    "literal_addresses",
    "master_kv_pairs",
    "resolve_addresses",
]
