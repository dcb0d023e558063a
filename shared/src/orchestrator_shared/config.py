"""Configuration: ``orchestrator.conf.json`` with orchestrator's key names.

Where a value comes from, later sources winning:

1. the built-in default (chosen so that no file is needed at all);
2. the JSON file (``--config FILE``, else ``/etc/orchestrator.conf.json`` when it exists);
3. an environment variable ``ORCHESTRATOR_<Name>``; ``<Name>`` matches the key ignoring case
   and underscores, so ``ORCHESTRATOR_InstancePollSeconds`` and
   ``ORCHESTRATOR_INSTANCE_POLL_SECONDS`` both set ``InstancePollSeconds``. Lists are given as
   JSON (``["a","b"]``) or comma-separated;
4. a secret file: ``ORCHESTRATOR_<Name>_FILE=/run/secrets/x`` reads the value from that file
   (trailing newline stripped), the way container platforms mount secrets (when ``<Name>``
   without ``_FILE`` names no setting, as in ``ORCHESTRATOR_SSL_CERT_FILE``, the variable is the
   plain value of the setting it names). For the topology credentials, orchestrator's
   ``MySQLTopologyCredentialsConfigFile`` (an INI file with ``[client] user=... password=...``)
   is honoured too, and wins over the plain keys, as in orchestrator; likewise
   ``MySQLOrchestratorCredentialsConfigFile`` for the MySQL store. Both passwords may also be
   written ``${NAME}`` (read from the environment variable NAME), as in orchestrator.

Keys orchestrator spells differently are read in every source: legacy spellings
(:data:`SYNONYMS`) and keys in another unit (:data:`CONVERSIONS`, minutes into our seconds; within
one source our own key wins). Unknown keys are reported as warnings, never fatal, so an existing
orchestrator config with settings we do not implement still starts. A bad value raises
:class:`ConfigError` whose text is one line naming the setting and what was expected.

The settings object is immutable and passed explicitly; there is no global config. The sources
are read by :mod:`orchestrator_shared.config_sources`; this module is what they may set.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from orchestrator_shared.command_signing import MIN_KEY_LENGTH
from orchestrator_shared.config_sources import Conversion, Keys, read_sources
from orchestrator_shared.errors import ConfigError, InvalidInstanceKey
from orchestrator_shared.host_policy import HostPolicy, parse_allowed_entry, unanchored_entries
from orchestrator_shared.instance_key import InstanceKey
from orchestrator_shared.mysql_tls import topology_tls_context
from orchestrator_shared.nats_auth import nats_auth, redact_url
from orchestrator_shared.patterns import compile_pattern
from orchestrator_shared.redact import is_secret_setting, redact, register_secrets, secret_values

# the settings that are lists of regular expressions on host names (RE2, checked at start-up)
HOSTNAME_FILTER_SETTINGS = (
    "DiscoveryIgnoreHostnameFilters",
    "DiscoveryIgnoreReplicaHostnameFilters",
    "DiscoveryIgnoreMasterHostnameFilters",
    "RecoveryIgnoreHostnameFilters",
    "PromotionIgnoreHostnameFilters",
    "OSCIgnoreHostnameFilters",
)

DEFAULT_CONFIG_PATH = Path("/etc/orchestrator.conf.json")

# Older orchestrator spellings accepted for compatibility: legacy name -> current name.
SYNONYMS: dict[str, str] = {
    "SlaveLagQuery": "ReplicationLagQuery",
    "DiscoverByShowReplicaHosts": "DiscoverByShowSlaveHosts",
    # orchestrator recovery settings (issue 10)
    "DetachLostSlavesAfterMasterFailover": "DetachLostReplicasAfterMasterFailover",
    "PostponeSlaveRecoveryOnLagMinutes": "PostponeReplicaRecoveryOnLagMinutes",
}


# orchestrator's keys for settings we have under another name and unit: key -> conversion
CONVERSIONS: dict[str, Conversion] = {
    "RecoveryPeriodBlockMinutes": Conversion("RecoveryPeriodBlockSeconds", 60, "minutes"),
    # orchestrator downtimes lost instances for a year whatever this says (its 0, the sample
    # config's value, is no "off" there)
    "MasterFailoverLostInstancesDowntimeMinutes": Conversion(
        "LostInRecoveryDowntimeSeconds", 60, "minutes", zero_keeps_default=True
    ),
}

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]


class Settings(BaseModel):
    """Every setting the services understand, named as in orchestrator where it has one."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False)

    # --- MySQL topology access -------------------------------------------------------------
    MySQLTopologyUser: str = ""
    MySQLTopologyPassword: str = Field(default="", repr=False)
    MySQLTopologyCredentialsConfigFile: str = ""
    MySQLConnectTimeoutSeconds: PositiveFloat = 2
    MySQLDiscoveryReadTimeoutSeconds: PositiveFloat = 10
    MySQLTopologyMaxPoolConnections: PositiveInt = 3
    # TLS to every topology server (orchestrator's keys; docs/security.md, MySQL): the server
    # certificate is checked against MySQLTopologySSLCAFile (else the system's CAs) and must
    # name the host; SSLSkipVerify encrypts but checks nothing; CertFile/PrivateKeyFile are a
    # client certificate. Without TLS, a server asking for a cleartext password is refused.
    MySQLTopologyUseMutualTLS: bool = False
    MySQLTopologySSLCAFile: str = ""
    MySQLTopologySSLCertFile: str = ""
    MySQLTopologySSLPrivateKeyFile: str = ""
    MySQLTopologySSLSkipVerify: bool = False

    # --- discovery -------------------------------------------------------------------------
    InstancePollSeconds: PositiveFloat = 5
    DiscoverySeeds: tuple[str, ...] = ()
    DiscoverByShowSlaveHosts: bool = False
    DiscoveryIgnoreHostnameFilters: tuple[str, ...] = ()
    DiscoveryIgnoreReplicaHostnameFilters: tuple[str, ...] = ()
    DiscoveryIgnoreMasterHostnameFilters: tuple[str, ...] = ()
    # New: when not empty, the only hosts any service opens a MySQL connection to (seeds,
    # discover requests, the crawl, recovery commands, drop checks): IP addresses / CIDR
    # networks, or RE2 patterns searched in the host name (docs/security.md, MySQL).
    DiscoveryAllowedHostnameFilters: tuple[str, ...] = ()
    DiscoveryMaxConcurrency: PositiveInt = 300
    # New: how often every master is checked on its persistent liveness connection.
    MasterLivenessCheckIntervalSeconds: PositiveFloat = 0.5
    # New: how long a liveness check may take before the master counts as unreachable.
    MasterLivenessTimeoutSeconds: PositiveFloat = 1.0
    # New: the recovery leader keeps every healthy replica's @@slave_net_timeout at
    # ReplicaNetTimeoutSeconds and its MASTER_HEARTBEAT_PERIOD at half of it, so that the
    # replicas see a hung master within about that long (docs/recovery.md, "Hung master").
    # false: the replicas' settings are left as they are.
    ManageReplicaHeartbeat: bool = True
    # New: the managed @@slave_net_timeout, whole seconds (MariaDB's minimum is 1).
    ReplicaNetTimeoutSeconds: Annotated[int, Field(ge=1, le=3600)] = 1
    # New: where discovery serves /metrics and /health ("" = not at all).
    DiscoveryMetricsListenAddress: str = "127.0.0.1:9125"
    # New: where a recovery worker serves /metrics ("" = not at all: several workers on one host
    # would need a port each).
    RecoveryMetricsListenAddress: str = ""

    # --- classification --------------------------------------------------------------------
    DetectClusterAliasQuery: str = ""
    DetectDataCenterQuery: str = ""
    DataCenterPattern: str = ""
    DetectRegionQuery: str = ""
    RegionPattern: str = ""
    DetectPromotionRuleQuery: str = ""
    ReplicationLagQuery: str = ""

    # --- bus -------------------------------------------------------------------------------
    NATSServers: tuple[str, ...] = ()
    NATSSubjectPrefix: str = "orchestrator"
    # New: how every service authenticates to NATS (docs/security.md, The bus): a credentials
    # file (user JWT + seed), or an nkey seed file, or a user and password; TLS with a CA and
    # an optional client certificate. None set: anonymous (orchestrator up on loopback).
    NATSCredsFile: str = ""
    NATSNKeySeedFile: str = ""
    NATSUser: str = ""
    NATSPassword: str = Field(default="", repr=False)
    NATSCAFile: str = ""
    NATSCertFile: str = ""
    NATSKeyFile: str = ""
    # New: the secret topology-api signs every command with (HMAC-SHA256) and the recovery
    # workers verify (docs/bus.md, Signed commands). Empty: the API sends unsigned commands and
    # a worker refuses them all unless AllowUnsignedCommands is set.
    CommandSigningKey: str = Field(default="", repr=False)
    AllowUnsignedCommands: bool = False
    # New: how long a signed command stays valid after it was sent.
    CommandExpirySeconds: Annotated[float, Field(gt=0, le=600)] = 30
    EventsRetentionDays: PositiveInt = 7
    # New: the byte bound of the events stream besides its age (docs/bus.md): past it the
    # oldest events are dropped first, so a flood of events never fills NATS's disk.
    EventsMaxBytes: Annotated[int, Field(ge=1 << 20)] = 1 << 30
    # New: on how many servers of a NATS cluster JetStream keeps each of our streams (the
    # snapshots, the events, the dead letters). 1 for one nats-server; 3 for a 3-node cluster,
    # so that losing one server loses nothing (deploy/kubernetes). Applies when a stream is
    # created: change an existing one with `nats stream edit --replicas`.
    NATSStreamReplicas: Annotated[int, Field(ge=1, le=5)] = 1
    # New: etcd client URLs for the recovery leadership (issue 4); empty under `orchestrator up`
    # means a local etcd is started.
    EtcdEndpoints: tuple[str, ...] = ()

    # --- recovery leadership on etcd (issue 4; docs/coordinator.md) -------------------------
    # Key prefix of the leadership keys (``<prefix>/recovery/leader``, ``.../members/<id>``).
    EtcdKeyPrefix: str = "/orchestrator"
    # Lease of each recovery worker: a crashed leader's key disappears this long after its last
    # keep-alive (etcd leases are whole seconds).
    EtcdLeaseTTLSeconds: PositiveInt = 3
    # Keep-alive period of the lease; also the safety margin by which a leader that cannot renew
    # gives up before its lease could expire. At most a third of the TTL.
    EtcdKeepAliveIntervalSeconds: PositiveFloat = 0.5
    # Deadline of one etcd request (keep-alive, guard transaction, campaign). At most a third
    # of the TTL.
    EtcdRequestTimeoutSeconds: PositiveFloat = 1.0
    EtcdUser: str = ""
    EtcdPassword: str = Field(default="", repr=False)
    EtcdCACertFile: str = ""  # PEM; https:// endpoints without it trust the system's CAs
    EtcdCertFile: str = ""  # client certificate (PEM), with EtcdKeyFile
    EtcdKeyFile: str = ""
    # New: allow EtcdUser/EtcdPassword over plain http:// endpoints (the password then crosses
    # the network in clear text on every authentication). Off: such a configuration is refused.
    EtcdAllowInsecurePassword: bool = False
    # Where orchestrator-coordinator serves /status and /metrics.
    CoordinatorListenAddress: str = "127.0.0.1:9127"

    # --- recovery (issue 5; docs/recovery.md) -----------------------------------------------
    # Clusters (name, alias, "alias=X", "alias~=regex", a regex on the name, or "*") whose dead
    # masters / intermediate masters are recovered automatically. orchestrator's default: none
    # (`orchestrator up` sets "*" when you set nothing). A manual `recover` ignores them.
    RecoverMasterClusterFilters: tuple[str, ...] = ()
    RecoverIntermediateMasterClusterFilters: tuple[str, ...] = ()
    # After a recovery, another automated one in the same cluster waits this long unless
    # acknowledged (anti-flapping).
    RecoveryPeriodBlockSeconds: NonNegativeInt = 3600
    # Never promote a replica lagging this many minutes or more (0: no limit).
    FailMasterPromotionOnLagMinutes: NonNegativeInt = 0
    PreventCrossDataCenterMasterFailover: bool = False
    PreventCrossRegionMasterFailover: bool = False
    # Lost replicas (and the failed master) are downtimed this long after a recovery.
    LostInRecoveryDowntimeSeconds: NonNegativeInt = 86400
    # New: how long a recovery waits for the successor to apply its relay log before it refuses
    # (it never promotes stale data).
    RecoveryCatchUpTimeoutSeconds: PositiveFloat = 10.0
    # A maintenance lock (`begin-maintenance`) lasts this long unless a duration is given;
    # expired locks count as absent. At most 30 days.
    MaintenanceExpireMinutes: Annotated[int, Field(gt=0, le=43200)] = 10
    # orchestrator's hooks (docs/hooks.md); each a list of shell commands.
    OnFailureDetectionProcesses: tuple[str, ...] = ()
    PreFailoverProcesses: tuple[str, ...] = ()
    PostMasterFailoverProcesses: tuple[str, ...] = ()
    PostIntermediateMasterFailoverProcesses: tuple[str, ...] = ()
    PostFailoverProcesses: tuple[str, ...] = ()
    PostUnsuccessfulFailoverProcesses: tuple[str, ...] = ()
    PreGracefulTakeoverProcesses: tuple[str, ...] = ()
    PostGracefulTakeoverProcesses: tuple[str, ...] = ()
    # Topology operations (issue 6; docs/api.md): a replica lagging more than this is neither
    # moved under nor promoted by a graceful takeover, and a takeover's successor gets this long
    # to apply what the old master logged.
    ReasonableMaintenanceReplicationLagSeconds: PositiveInt = 20
    # A semi-sync master waiting for acknowledgements from too few semi-sync replicas is a
    # LockedSemiSyncMasterHypothesis; once its binlog coordinates stayed still this long, a
    # LockedSemiSyncMaster. 0 (orchestrator's default): ReasonableReplicationLagSeconds.
    ReasonableLockedSemiSyncMasterSeconds: NonNegativeInt = 0
    # A query run on the designated replica of a graceful takeover, answering the replication
    # user and password (first two columns) the demoted master uses to replicate from it.
    # MariaDB cannot show a replica's password; without this the demoted master keeps the
    # credentials it has (none, if it never replicated), and `-auto` refuses when it has none.
    ReplicationCredentialsQuery: str = ""
    # New: every hook is killed (with its children) after this long.
    HookTimeoutSeconds: Annotated[float, Field(gt=0, le=3600)] = 30.0
    # New: names of the worker's environment variables a hook also gets. By default a hook gets
    # only PATH, HOME, LANG, LC_ALL, TZ, USER, LOGNAME, SHELL, TMPDIR and the ORC_* variables.
    HookEnvironmentPassThrough: tuple[str, ...] = ()

    # --- orchestrator recovery settings (issue 10) ---
    # (docs/configuration.md and docs/recovery*.md say what each does and how it differs.)
    # Regular expressions on the host name: an instance that matches is left out of the
    # analysis (API and recovery alike), so it is never recovered automatically.
    RecoveryIgnoreHostnameFilters: tuple[str, ...] = ()
    # Regular expressions on the host name: a matching instance is never promoted (as must_not).
    PromotionIgnoreHostnameFilters: tuple[str, ...] = ()
    # Replicas delayed or lagging more than this are moved under the new master after the
    # recovery, in the background (0: never postponed).
    PostponeReplicaRecoveryOnLagMinutes: NonNegativeInt = 0
    # The successor's relay log at promotion: wait until it is applied, failing only when the
    # SQL thread makes no progress for ReasonableReplicationLagSeconds (Delay), or refuse at once
    # when it is not applied (Fail). Neither: wait up to RecoveryCatchUpTimeoutSeconds.
    DelayMasterPromotionIfSQLThreadNotUpToDate: bool = False
    FailMasterPromotionIfSQLThreadNotUpToDate: bool = False
    # (the Delay rule's "no progress" limit is ReasonableReplicationLagSeconds, below)
    # False: a master failover leaves the successor as it is (no RESET SLAVE ALL, still
    # read_only) for the operator's hooks to promote; its siblings are still moved under it.
    ApplyMySQLPromotionAfterMasterFailover: bool = True
    # Replicas lost in a master failover get detach-replica-master-host (Master_Host = //host).
    DetachLostReplicasAfterMasterFailover: bool = True
    # Semi-sync: a LockedSemiSyncMaster is recovered by enabling semi-sync on enough replicas
    # (Recover: at least the master's wait count; Enforce: exactly, also disabling extras, and
    # MasterWithTooManySemiSyncReplicas is analysed and recovered).
    EnforceExactSemiSyncReplicas: bool = False
    RecoverLockedSemiSyncMaster: bool = False
    # Hooks run after every successful take-master (docs/hooks.md).
    PostTakeMasterProcesses: tuple[str, ...] = ()
    # New (docs/galera.md): a Galera node seeing fewer nodes in its cluster than this is
    # GaleraClusterSizeBelowExpected in the analysis (0: not checked).
    GaleraExpectedClusterSize: NonNegativeInt = 0
    # New (docs/galera.md): a Galera node desynced (@@wsrep_desync, Donor/Desynced) this long
    # without a break is GaleraNodeDesyncedTooLong (0: not checked). A backup's desync lasts
    # minutes; one left ON by hand lets the node fall ever further behind (no flow control).
    GaleraDesyncedTooLongSeconds: NonNegativeInt = 600

    @model_validator(mode="after")
    def _one_sql_thread_rule(self) -> Settings:
        if (
            self.DelayMasterPromotionIfSQLThreadNotUpToDate
            and self.FailMasterPromotionIfSQLThreadNotUpToDate
        ):
            raise ValueError(
                "DelayMasterPromotionIfSQLThreadNotUpToDate: cannot be true together with "
                "FailMasterPromotionIfSQLThreadNotUpToDate (choose one, as in orchestrator)"
            )
        return self

    # --- topology-api: HTTP, authentication, storage -------------------------------------
    # orchestrator listens on ":3000"; ours defaults to loopback so the open default is safe.
    ListenAddress: str = "127.0.0.1:3000"
    # "" (orchestrator's default: open, allowed on a loopback address only), "none" (open,
    # explicitly), "basic", "multi" (basic + a read-only user), "proxy", "token".
    AuthenticationMethod: Literal["", "none", "basic", "multi", "proxy", "token"] = ""
    HTTPAuthUser: str = ""
    HTTPAuthPassword: str = Field(default="", repr=False)
    # New: under "multi", the password the user "readonly" must give. Empty (the default, as
    # orchestrator): any password; reading is all that user may do (docs/security.md).
    HTTPAuthReadOnlyPassword: str = Field(default="", repr=False)
    AuthUserHeader: str = "X-Forwarded-User"
    # Deliberately unlike orchestrator ("*"): nobody may change things under proxy until named.
    PowerAuthUsers: tuple[str, ...] = ()
    # New: the peers (CIDRs) whose AuthUserHeader is believed under proxy; others get 401.
    TrustedProxyCIDRs: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    # New (docs/security.md): the names a request's Host header may carry, besides localhost,
    # 127.0.0.1, ::1 and ListenAddress's host ("*": any). A DNS-rebinding page reaches the API
    # under its own domain name, which is not listed. Gateways and Kubernetes services add theirs.
    HTTPAllowedHosts: tuple[str, ...] = ()
    # New: refuse mutations on GET (405). Off by default: orchestrator-client sends them on GET;
    # browsers' cross-site requests are refused by the Sec-Fetch-Site / Origin check either way.
    HTTPRefuseGETMutations: bool = False
    # New: static bearer tokens for AuthenticationMethod "token": token -> "read" | "admin".
    APITokens: dict[str, Literal["read", "admin"]] = Field(default_factory=dict, repr=False)
    # "sqlite" (orchestrator's "sqlite3" too), "postgres" or "mysql"; absent: "mysql" when
    # MySQLOrchestratorHost is set (orchestrator's default), else "sqlite" (no server needed).
    BackendDB: Literal["sqlite", "postgres", "mysql"] = "sqlite"
    SQLite3DataFile: str = "orchestrator.sqlite3"
    PostgreSQLDSN: str = Field(default="", repr=False)
    AuditPurgeDays: PositiveInt = 7  # audit, detections and finished recoveries kept this long

    # --- API and compatibility settings (issue 10) ---
    # HTTPS for the API (orchestrator's keys; docs/api.md, HTTPS). UseSSL needs SSLCertFile and
    # SSLPrivateKeyFile (PEM); topology-api checks the files when it starts.
    UseSSL: bool = False
    SSLCertFile: str = ""
    SSLPrivateKeyFile: str = ""
    # New: the passphrase of an encrypted SSLPrivateKeyFile (orchestrator asks on the terminal).
    SSLPrivateKeyPassword: str = Field(default="", repr=False)
    # Client certificates (UseMutualTLS) must be signed by a CA in SSLCAFile; with SSLValidOUs,
    # one of their OUs must be listed. StatusEndpoint answers without a certificate unless
    # StatusOUVerify.
    UseMutualTLS: bool = False
    SSLCAFile: str = ""
    SSLValidOUs: tuple[str, ...] = ()
    StatusEndpoint: str = "/api/status"
    StatusOUVerify: bool = False
    # A replica lagging more than this (after its SQL_Delay) has the `replication_lag` problem
    # and counts as lagging in the replication analysis; also the longest
    # DelayMasterPromotionIfSQLThreadNotUpToDate waits without the successor's SQL thread
    # making progress.
    ReasonableReplicationLagSeconds: NonNegativeInt = 10
    # A promotion rule set with `register-candidate` expires this long after it was registered.
    CandidateInstanceExpireMinutes: PositiveInt = 60

    # --- the MySQL/MariaDB store (BackendDB "mysql"; docs/storage.md) ------------------------
    MySQLOrchestratorHost: str = ""
    MySQLOrchestratorPort: Annotated[int, Field(ge=1, le=65535)] = 3306
    MySQLOrchestratorDatabase: str = ""  # created when missing, as orchestrator does
    MySQLOrchestratorUser: str = ""
    # "${NAME}" reads the environment variable NAME, as in orchestrator
    MySQLOrchestratorPassword: str = Field(default="", repr=False)
    # an INI file with [client] user=... password=...; wins over the two keys above
    MySQLOrchestratorCredentialsConfigFile: str = ""
    MySQLOrchestratorUseMutualTLS: bool = False  # TLS to the store; the files below need it
    MySQLOrchestratorSSLCAFile: str = ""  # PEM; without it the system's CAs are trusted
    MySQLOrchestratorSSLCertFile: str = ""  # client certificate (PEM), with the key file
    MySQLOrchestratorSSLPrivateKeyFile: str = ""
    MySQLOrchestratorSSLSkipVerify: bool = False  # encrypt, but check no certificate
    MySQLOrchestratorMaxPoolConnections: PositiveInt = 128  # per API process, opened on demand
    MySQLOrchestratorReadTimeoutSeconds: PositiveFloat = 30  # per statement (the connect:
    # MySQLConnectTimeoutSeconds)
    # a connection the server refuses a write on as read-only is dropped, so the pool connects
    # again (to whatever the host name points at by then, say after a failover)
    MySQLOrchestratorRejectReadOnly: bool = False
    # --- orchestrator-client compatibility (issue 10; docs/api.md) -------------------------
    # The API (and /docs, /metrics) answers under this path, e.g. "/orchestrator" for
    # /orchestrator/api/...; written as orchestrator accepts it ("orchestrator/" too).
    URLPrefix: str = ""
    # submit-masters-to-kv-stores: keys are <prefix>/<cluster alias>[/hostname|port|ipv4|ipv6].
    KVClusterMasterPrefix: str = "mysql/master"
    # cluster-osc-replicas leaves out replicas matching these (an IP: that host exactly; else a
    # regex searched in host:port).
    OSCIgnoreHostnameFilters: tuple[str, ...] = ()

    # --- validators ------------------------------------------------------------------------
    @field_validator("DiscoverySeeds")
    @classmethod
    def _seeds_are_keys(cls, seeds: tuple[str, ...]) -> tuple[str, ...]:
        for seed in seeds:
            try:
                InstanceKey.parse(seed)
            except InvalidInstanceKey as exc:
                raise ValueError(str(exc)) from None
        return seeds

    @field_validator(*HOSTNAME_FILTER_SETTINGS)
    @classmethod
    def _filters_are_regexes(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            _check_regex(pattern)
        return patterns

    @field_validator("DiscoveryAllowedHostnameFilters")
    @classmethod
    def _allowed_hosts(cls, entries: tuple[str, ...]) -> tuple[str, ...]:
        """IP addresses, CIDR networks or host-name patterns (orchestrator_shared.host_policy)."""
        for entry in entries:
            parse_allowed_entry(entry)  # ValueError: pydantic names the setting
        return entries

    @field_validator("RecoverMasterClusterFilters", "RecoverIntermediateMasterClusterFilters")
    @classmethod
    def _cluster_filters(cls, filters: tuple[str, ...]) -> tuple[str, ...]:
        """``*``, a name, ``alias=NAME``, ``alias~=REGEX`` or a regex on the cluster name."""
        for entry in filters:
            if entry and entry != "*" and not entry.startswith("alias="):
                _check_regex(entry.removeprefix("alias~="))
        return filters

    @field_validator("DataCenterPattern", "RegionPattern")
    @classmethod
    def _pattern_is_regex(cls, pattern: str) -> str:
        if pattern:
            _check_regex(pattern)
        return pattern

    @field_validator("NATSServers")
    @classmethod
    def _nats_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not re.fullmatch(r"(nats|tls|ws|wss)://[^\s/]+(:\d+)?/?", url):
                raise ValueError(f"expected nats://host:port URLs, got {redact_url(url)!r}")
        return urls

    @field_validator("CommandSigningKey")
    @classmethod
    def _signing_key(cls, key: str) -> str:
        if key and len(key) < MIN_KEY_LENGTH:
            # never echo the value: it is a secret
            raise ValueError(
                f"expected at least {MIN_KEY_LENGTH} characters (e.g. openssl rand -hex 32), "
                f"got {len(key)}"
            )
        return key

    @field_validator("EtcdEndpoints")
    @classmethod
    def _etcd_urls(cls, urls: tuple[str, ...]) -> tuple[str, ...]:
        for url in urls:
            if not re.fullmatch(r"https?://[^\s/]+(:\d+)?/?", url):
                raise ValueError(f"expected http(s)://host:port URLs, got {url!r}")
        return urls

    @field_validator("DiscoveryMetricsListenAddress", "RecoveryMetricsListenAddress")
    @classmethod
    def _listen_address(cls, address: str) -> str:
        if address:
            parse_listen_address(address)
        return address

    @field_validator("CoordinatorListenAddress")
    @classmethod
    def _coordinator_listen_address(cls, address: str) -> str:
        parse_listen_address(address)
        return address

    @field_validator("EtcdKeyPrefix")
    @classmethod
    def _etcd_key_prefix(cls, prefix: str) -> str:
        if not re.fullmatch(r"(/[A-Za-z0-9_.-]+)+", prefix):
            raise ValueError("expected an absolute key path such as /orchestrator (no trailing /)")
        return prefix

    @field_validator("NATSSubjectPrefix")
    @classmethod
    def _subject_prefix(cls, prefix: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*", prefix):
            raise ValueError("expected dot-separated tokens of letters, digits, '-' or '_'")
        return prefix

    @field_validator("URLPrefix")
    @classmethod
    def _url_prefix(cls, prefix: str) -> str:
        return normalize_url_prefix(prefix)

    @field_validator("TrustedProxyCIDRs")
    @classmethod
    def _proxy_networks(cls, networks: tuple[str, ...]) -> tuple[str, ...]:
        for network in networks:
            try:
                ip_network(network.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{network!r} is not an address or CIDR network") from None
        return networks

    @field_validator("ListenAddress")
    @classmethod
    def _api_listen_address(cls, address: str) -> str:
        parse_listen_address(address)
        return address

    @field_validator("BackendDB", mode="before")
    @classmethod
    def _backend_name(cls, value: Any) -> Any:
        """orchestrator's names: ``sqlite3`` (any name with sqlite in it) and ``mysql``."""
        if isinstance(value, str):
            value = value.strip().lower()
            return "sqlite" if "sqlite" in value else value
        return value

    @model_validator(mode="before")
    @classmethod
    def _backend_default(cls, data: Any) -> Any:
        """orchestrator's BackendDB defaults to mysql: a configuration naming a MySQL store
        host and no BackendDB (or "") means that store; with no host, the default stands."""
        if not isinstance(data, dict) or data.get("BackendDB"):
            return data
        data = {key: value for key, value in data.items() if key != "BackendDB"}
        if data.get("MySQLOrchestratorHost"):
            data["BackendDB"] = "mysql"
        return data

    @field_validator("MySQLOrchestratorDatabase")
    @classmethod
    def _database_name(cls, name: str) -> str:
        if name and not re.fullmatch(r"[A-Za-z0-9_$-]{1,64}", name):
            raise ValueError("expected a database name of letters, digits, _, $ or - (<= 64)")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        method = self.AuthenticationMethod
        if method in ("basic", "multi") and not (self.HTTPAuthUser and self.HTTPAuthPassword):
            raise ValueError(
                f"AuthenticationMethod: {method!r} needs HTTPAuthUser and HTTPAuthPassword"
            )
        if method == "token" and not self.APITokens:
            raise ValueError("AuthenticationMethod: 'token' needs APITokens")
        if self.BackendDB == "postgres" and not self.PostgreSQLDSN:
            raise ValueError("BackendDB: 'postgres' needs PostgreSQLDSN")
        if self.BackendDB == "mysql":
            self._check_mysql_store()
        if bool(self.MySQLTopologySSLCertFile) != bool(self.MySQLTopologySSLPrivateKeyFile):
            raise ValueError(
                "MySQLTopologySSLCertFile: MySQLTopologySSLCertFile and "
                "MySQLTopologySSLPrivateKeyFile go together"
            )
        self._check_etcd()
        return self

    def _check_mysql_store(self) -> None:
        for name in ("MySQLOrchestratorHost", "MySQLOrchestratorDatabase"):
            if not getattr(self, name):
                raise ValueError(f"BackendDB: 'mysql' needs {name}")
        if not self.MySQLOrchestratorUser:
            raise ValueError(
                "BackendDB: 'mysql' needs MySQLOrchestratorUser "
                "(or MySQLOrchestratorCredentialsConfigFile)"
            )
        if self.MySQLOrchestratorUseMutualTLS and bool(self.MySQLOrchestratorSSLCertFile) != bool(
            self.MySQLOrchestratorSSLPrivateKeyFile
        ):
            raise ValueError(
                "MySQLOrchestratorSSLCertFile: MySQLOrchestratorSSLCertFile and "
                "MySQLOrchestratorSSLPrivateKeyFile go together"
            )

    def _check_etcd(self) -> None:
        """The leadership timing rules (docs/coordinator.md): a leader renews its lease several
        times per TTL, gives up one keep-alive interval before the lease could expire, and a
        destructive MySQL step can finish inside the lease."""
        ttl = self.EtcdLeaseTTLSeconds
        if self.EtcdKeepAliveIntervalSeconds > ttl / 3:
            raise ValueError(
                f"EtcdKeepAliveIntervalSeconds: must be at most a third of EtcdLeaseTTLSeconds "
                f"({ttl} s), got {self.EtcdKeepAliveIntervalSeconds:g}"
            )
        if self.EtcdRequestTimeoutSeconds > ttl / 3:
            raise ValueError(
                f"EtcdRequestTimeoutSeconds: must be at most a third of EtcdLeaseTTLSeconds "
                f"({ttl} s), got {self.EtcdRequestTimeoutSeconds:g}"
            )
        if self.MySQLConnectTimeoutSeconds >= ttl:
            raise ValueError(
                f"EtcdLeaseTTLSeconds: must be above MySQLConnectTimeoutSeconds "
                f"({self.MySQLConnectTimeoutSeconds:g} s), the longest a recovery step waits "
                f"for a server, got {ttl}"
            )
        if bool(self.EtcdUser) != bool(self.EtcdPassword):
            raise ValueError("EtcdUser: EtcdUser and EtcdPassword go together")
        plain = [url for url in self.etcd_endpoints_or_local if url.startswith("http://")]
        if self.EtcdPassword and plain and not self.EtcdAllowInsecurePassword:
            raise ValueError(
                f"EtcdPassword: would be sent in clear text to {plain[0]}; use https:// endpoints "
                "(EtcdCACertFile) or set EtcdAllowInsecurePassword"
            )
        if bool(self.EtcdCertFile) != bool(self.EtcdKeyFile):
            raise ValueError("EtcdCertFile: EtcdCertFile and EtcdKeyFile go together")
        tls_files = self.EtcdCACertFile or self.EtcdCertFile
        if tls_files and any(url.startswith("http://") for url in self.EtcdEndpoints):
            raise ValueError("EtcdEndpoints: TLS files are set, so every URL must be https://")

    @model_validator(mode="after")
    def _api_tls(self) -> Settings:
        """The HTTPS settings go together (their files are read when the API starts)."""
        if self.UseSSL and not (self.SSLCertFile and self.SSLPrivateKeyFile):
            raise ValueError("UseSSL: needs SSLCertFile and SSLPrivateKeyFile")
        if self.UseMutualTLS and not self.UseSSL:
            raise ValueError("UseMutualTLS: needs UseSSL (client certificates come with HTTPS)")
        if self.UseMutualTLS and not self.SSLCAFile:
            raise ValueError(
                "UseMutualTLS: needs SSLCAFile, the CA that signs the clients' certificates"
            )
        if not self.StatusEndpoint.startswith("/"):
            raise ValueError(
                f"StatusEndpoint: expected a path such as /api/status, got {self.StatusEndpoint!r}"
            )
        return self

    # --- derived ---------------------------------------------------------------------------
    @property
    def seed_keys(self) -> tuple[InstanceKey, ...]:
        return tuple(InstanceKey.parse(seed) for seed in self.DiscoverySeeds)

    @property
    def nats_servers_or_local(self) -> list[str]:
        """The configured NATS servers, or the machine's local one."""
        return list(self.NATSServers) or ["nats://127.0.0.1:4222"]

    @property
    def etcd_endpoints_or_local(self) -> list[str]:
        """The configured etcd endpoints, or the machine's local one."""
        return list(self.EtcdEndpoints) or ["http://127.0.0.1:2379"]

    @property
    def locked_semi_sync_master_seconds(self) -> int:
        """``ReasonableLockedSemiSyncMasterSeconds``, or as orchestrator does when it is 0,
        ``ReasonableReplicationLagSeconds``."""
        return self.ReasonableLockedSemiSyncMasterSeconds or self.ReasonableReplicationLagSeconds


@dataclass(frozen=True, slots=True)
class LoadedSettings:
    settings: Settings
    source: str
    warnings: tuple[str, ...]


def _check_regex(pattern: str) -> None:
    """RE2's syntax, at most MAX_PATTERN_LENGTH characters (orchestrator_shared.patterns)."""
    compile_pattern(pattern)  # InvalidPattern is a ValueError: pydantic names the setting


_URL_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)*")


def normalize_url_prefix(prefix: str) -> str:
    """orchestrator's ``URLPrefix`` as it reads it: leading and trailing slashes trimmed, one
    leading slash put back (``orchestrator/`` is ``/orchestrator``; ``""`` and ``/`` are no
    prefix). ValueError for what cannot be a path: spaces, ``?``, ``#``, ``%``, empty, ``.``
    or ``..`` segments."""
    trimmed = prefix.strip().strip("/")
    if not trimmed:
        return ""
    normalized = "/" + trimmed
    segments = trimmed.split("/")
    if not _URL_PREFIX.fullmatch(normalized) or any(s in {"", ".", ".."} for s in segments):
        raise ValueError(
            f"expected a URL path such as /orchestrator (letters, digits, - . _ ~ between "
            f"slashes), got {prefix!r}"
        )
    return normalized


def parse_listen_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``:port`` (all interfaces, as orchestrator's ``ListenAddress``)."""
    host, sep, port_text = address.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected host:port or :port, got {address!r}")
    return (host.strip("[]") or "0.0.0.0", int(port_text))


# what config_sources may read: our settings and orchestrator's other names for them
_KEYS = Keys(Settings.model_fields, SYNONYMS, CONVERSIONS)


def _tls_files_warning(settings: Settings, prefix: str, what: str) -> list[str]:
    """A warning when ``<prefix>SSL*File`` is set without ``<prefix>UseMutualTLS``."""
    if getattr(settings, f"{prefix}UseMutualTLS"):
        return []
    names = (f"{prefix}SSLCAFile", f"{prefix}SSLCertFile", f"{prefix}SSLPrivateKeyFile")
    tls_files = [name for name in names if getattr(settings, name)]
    if not tls_files:
        return []
    return [
        f"{tls_files[0]} is set but {prefix}UseMutualTLS is not: {what} reached without TLS "
        "(as orchestrator does)"
    ]


def _mysql_store_warnings(settings: Settings) -> list[str]:
    if settings.BackendDB != "mysql":
        return []
    return _tls_files_warning(settings, "MySQLOrchestrator", "the MySQL store is")


def _allow_list_warnings(settings: Settings) -> list[str]:
    """Seeds the allow-list refuses (never contacted), and patterns that allow more than
    they seem to (no ``$``: ``db1`` allows ``db1.attacker.example`` too)."""
    policy = HostPolicy.from_settings(settings)
    warnings = [
        f"DiscoverySeeds: {seed} is not allowed by DiscoveryAllowedHostnameFilters; it will "
        "not be contacted"
        for seed in settings.seed_keys
        if not policy.is_allowed(seed.host)
    ]
    warnings += [
        f"DiscoveryAllowedHostnameFilters: {entry!r} is not anchored with $: it also allows "
        "every host name that contains a match"
        for entry in unanchored_entries(settings.DiscoveryAllowedHostnameFilters)
    ]
    return warnings


def _describe(error: dict[str, Any]) -> str:
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if message == "Input should be a valid tuple":
        message = "expected a JSON list"
    value = error.get("input")
    if isinstance(value, str | int | float | bool) and "got" not in message:
        loc = error.get("loc") or ()
        field = Settings.model_fields.get(str(loc[0])) if loc else None
        if loc and is_secret_setting(str(loc[0]), in_repr=field is None or field.repr):
            return message  # never echo a secret setting's value
        message = f"{message}, got {value!r}"
    return redact(message)


def load_settings(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    default_path: Path = DEFAULT_CONFIG_PATH,
) -> LoadedSettings:
    """Build the settings from defaults, a file and the environment (see the module docstring)."""
    env = os.environ if environ is None else environ
    raw, source, warnings = read_sources(path, env, default_path, _KEYS)
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = _describe(dict(first))
        setting = str(first["loc"][0]) if first["loc"] else "config"
        if not first["loc"]:  # a rule across settings names the setting it is about
            setting, _, message = message.partition(": ")
        raise ConfigError(setting, message) from None
    register_secrets(secret_values(settings))
    warnings += _mysql_store_warnings(settings)
    warnings += _tls_files_warning(settings, "MySQLTopology", "topology servers are")
    warnings += _allow_list_warnings(settings)
    # the TLS files are read now: a file that cannot be used stops every service at startup
    topology_tls_context(settings)
    nats_auth(settings)
    if settings.AllowUnsignedCommands and not settings.CommandSigningKey:
        warnings.append(
            "AllowUnsignedCommands is set and CommandSigningKey is not: commands are not "
            "authenticated, whoever may publish on the command subjects can run any operation"
        )
    return LoadedSettings(settings=settings, source=source, warnings=tuple(warnings))
