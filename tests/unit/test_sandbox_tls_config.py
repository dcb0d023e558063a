"""The sandbox's TLS option without a server: the files checked before anything starts (one
line naming the option), the nodes' ``my.cnf``, the replicas' ``CHANGE MASTER``, the manifest
keeping the files, and ``sandbox up --ssl-*`` argument checking."""

from __future__ import annotations

import configparser
import json
import stat
from pathlib import Path

import pytest

from orchestrator_cli.local_stack import common_settings
from orchestrator_cli.main import main
from orchestrator_cli.sandbox import manifest
from orchestrator_cli.sandbox.certificates import make_throwaway_tls
from orchestrator_cli.sandbox.config import (
    HOST,
    SandboxOptions,
    SandboxTLS,
    change_master_sql,
    node_layouts,
    render_my_cnf,
    socket_dir,
)
from orchestrator_cli.sandbox.tls import check_files
from orchestrator_shared.config import Settings, load_settings
from orchestrator_shared.errors import SandboxError
from tests.harness.certificates import TestAuthority

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> SandboxTLS:
    authority = TestAuthority(tmp_path_factory.mktemp("tls"))
    cert, key = authority.issue("server", alt_names="IP:127.0.0.1")
    return SandboxTLS(ca=authority.certificate, cert=cert, key=key)


def test_usable_files_pass_and_relative_paths_become_absolute(
    files: SandboxTLS, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_files(files)
    monkeypatch.chdir(files.ca.parent)
    relative = SandboxTLS(ca=Path("ca.pem"), cert=Path("server.pem"), key=Path("server.key"))
    assert relative == files
    check_files(relative)


def test_a_missing_or_unusable_file_is_one_line_naming_the_option(
    files: SandboxTLS, tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    other = TestAuthority(tmp_path / "other")
    other_cert, other_key = other.issue("other")
    authority = TestAuthority(tmp_path / "more")
    wrong_name = authority.issue("elsewhere", alt_names="DNS:db.example.com")
    client_only = authority.issue("client-only", usage="clientAuth", alt_names=f"IP:{HOST}")
    cases = [
        (SandboxTLS(ca=tmp_path / "nope.pem", cert=files.cert, key=files.key), "ssl-ca "),
        (SandboxTLS(ca=garbage, cert=files.cert, key=files.key), "ssl-ca "),
        (SandboxTLS(ca=files.ca, cert=tmp_path / "nope.pem", key=files.key), "ssl-cert "),
        (SandboxTLS(ca=files.ca, cert=files.cert, key=tmp_path / "nope.key"), "ssl-key "),
        (SandboxTLS(ca=files.ca, cert=garbage, key=files.key), "not a usable certificate"),
        (SandboxTLS(ca=files.ca, cert=files.cert, key=other_key), "not a usable certificate"),
        (
            SandboxTLS(ca=files.ca, cert=other_cert, key=other_key),
            f"does not verify against ssl-ca {files.ca} for 127.0.0.1: unable to get local issuer",
        ),
        (
            SandboxTLS(ca=authority.certificate, cert=wrong_name[0], key=wrong_name[1]),
            "for 127.0.0.1: IP address mismatch",
        ),
        (
            SandboxTLS(ca=authority.certificate, cert=client_only[0], key=client_only[1]),
            "for 127.0.0.1: unsuitable certificate purpose",
        ),
    ]
    for tls, expected in cases:
        with pytest.raises(SandboxError) as raised:
            check_files(tls)
        message = str(raised.value)
        assert expected in message, message
        assert "\n" not in message


def test_every_node_serves_tls_with_the_files(files: SandboxTLS) -> None:
    options = SandboxOptions(nodes=2, base_port=22306, tls=files)
    for layout in node_layouts(Path("/srv/sbx"), options):
        parser = configparser.ConfigParser(allow_no_value=True, interpolation=None)
        parser.read_string(render_my_cnf(layout, options))
        cnf = parser["mariadbd"]
        assert (cnf["ssl-ca"], cnf["ssl-cert"], cnf["ssl-key"]) == (
            str(files.ca),
            str(files.cert),
            str(files.key),
        )
    plain = SandboxOptions(nodes=1, base_port=22306)
    assert "ssl" not in render_my_cnf(node_layouts(Path("/srv/sbx"), plain)[0], plain)


def test_replicas_verify_their_source_over_tls_only_when_asked(tmp_path: Path) -> None:
    assert "master_ssl" not in change_master_sql(22306)
    quoted = SandboxTLS(ca=Path("/certs/o'neil\\ca.pem"), cert=Path("/c"), key=Path("/k"))
    sql = change_master_sql(22306, quoted)
    assert sql.endswith(
        ", master_ssl=1, master_ssl_ca='/certs/o\\'neil\\\\ca.pem', master_ssl_verify_server_cert=1"
    )


def test_the_manifest_keeps_the_files_and_reads_one_written_before_tls(
    files: SandboxTLS, tmp_path: Path
) -> None:
    options = SandboxOptions(nodes=1, base_port=22306, tls=files)
    layouts = node_layouts(tmp_path, options)
    written = manifest.Manifest(
        directory=tmp_path,
        options=options,
        mariadbd=Path("/usr/sbin/mariadbd"),
        version="10.11",
        socket_dir=socket_dir(tmp_path),
        layouts=layouts,
        pids=[None],
    )
    manifest.write(written)
    assert manifest.read(tmp_path).options == options

    document = json.loads(manifest.manifest_path(tmp_path).read_text())
    del document["options"]["tls"]  # as written before the sandbox had TLS
    manifest.manifest_path(tmp_path).write_text(json.dumps(document))
    assert manifest.read(tmp_path).options.tls is None


@pytest.mark.parametrize(
    ("flags", "missing"),
    [
        (["--ssl-ca", "ca.pem"], "--ssl-cert, --ssl-key missing"),
        (["--ssl-cert", "s.pem", "--ssl-key", "s.key"], "--ssl-ca missing"),
    ],
)
def test_the_ssl_flags_go_together(
    flags: list[str], missing: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sandbox", "up", "--dir", str(tmp_path), *flags]) == 1
    err = capsys.readouterr().err
    assert err == (
        f"orchestrator: error: --ssl-ca, --ssl-cert and --ssl-key go together: {missing}\n"
    )
    assert not (tmp_path / "sandbox.json").exists()


def test_a_missing_file_fails_before_anything_is_built(
    files: SandboxTLS, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags = ["--ssl-ca", str(files.ca), "--ssl-cert", str(files.cert)]
    argv = ["sandbox", "up", "--dir", str(tmp_path / "sbx"), *flags]
    assert main([*argv, "--ssl-key", str(tmp_path / "nope.key")]) == 1
    err = capsys.readouterr().err
    assert err == f"orchestrator: error: ssl-key {tmp_path / 'nope.key'}: no such file\n"
    assert not (tmp_path / "sbx").exists()


# --- `orchestrator up --sandbox-tls`: a throwaway CA, and the stack told to verify it -----------


def test_the_throwaway_ca_signs_a_server_certificate_for_127_0_0_1_and_keeps_no_key(
    tmp_path: Path,
) -> None:
    tls = make_throwaway_tls(tmp_path / "tls")
    check_files(tls)  # loads, and verifies against the CA for 127.0.0.1
    assert sorted(path.name for path in (tmp_path / "tls").iterdir()) == [
        "ca.pem",
        "server.key",
        "server.pem",
    ]
    assert stat.S_IMODE(tls.key.stat().st_mode) == 0o600
    first_ca = tls.ca.read_bytes()
    again = make_throwaway_tls(tmp_path / "tls")  # a new sandbox: new files over the old
    assert again == tls and again.ca.read_bytes() != first_ca
    check_files(again)
    other = make_throwaway_tls(tmp_path / "other")
    with pytest.raises(SandboxError, match=r"^ssl-cert .* does not verify against ssl-ca"):
        check_files(SandboxTLS(ca=other.ca, cert=again.cert, key=again.key))


def test_up_turns_topology_tls_on_for_a_tls_sandbox_unless_configured(tmp_path: Path) -> None:
    ca = tmp_path / "sandbox" / "tls" / "ca.pem"

    def common(document: dict[str, object], sandbox_ca: Path | None) -> Settings:
        config = tmp_path / "orchestrator.conf.json"
        config.write_text(json.dumps(document))
        shared = common_settings(
            load_settings(str(config)).settings,
            nats_servers=[],
            etcd_endpoints=[],
            seeds=[],
            sandbox_credentials=True,
            sandbox_ca=sandbox_ca,
        )
        return Settings.model_validate(shared)

    plain = common({}, None)
    assert (plain.MySQLTopologyUseMutualTLS, plain.MySQLTopologySSLCAFile) == (False, "")
    verified = common({}, ca)
    assert (verified.MySQLTopologyUseMutualTLS, verified.MySQLTopologySSLCAFile) == (True, str(ca))
    own = common({"MySQLTopologyUseMutualTLS": True, "MySQLTopologySSLSkipVerify": True}, ca)
    assert (own.MySQLTopologySSLCAFile, own.MySQLTopologySSLSkipVerify) == ("", True)
