"""The cluster side of the registry's identities, without a cluster.

* ``SecretsManagerIdentities`` (the store the provisioning Job uses) against moto's Secrets Manager:
  one secret per identity under the prefix, holding the two keys each step pod's Secret carries
  (External Secrets copies them key by key), tagged with role and customer, updated in place;
* the health probe every step and the Job make verifies the server's certificate against
  ``MLFLOW_TRACKING_SERVER_CERT_PATH`` (the CA the cluster's cert-manager issues from), the same
  bundle MLflow's own client trusts: a server whose certificate that CA did not sign is refused.
"""

from __future__ import annotations

import http.server
import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from model_steps import registry_admin, tracking
from model_steps.contract import StepError

moto = pytest.importorskip("moto")
PREFIX = "mlops-test/mlflow/identities"
NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@pytest.fixture
def secretsmanager(monkeypatch):
    import boto3

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "eu-west-1"}.items():  # fmt: skip
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # botocore would follow it past moto
    with moto.mock_aws():
        yield boto3.client("secretsmanager", region_name="eu-west-1")


def test_secrets_manager_store_one_secret_per_identity(secretsmanager):
    store = registry_admin.SecretsManagerIdentities(PREFIX, secretsmanager)
    assert store.password("scorer@acme-foods") is None
    store.keep("scorer@acme-foods", "first")
    store.keep("scorer@acme-foods", "second")  # a lost password replaced: the same secret
    store.keep("gate@globex", "g")
    names = sorted(s["Name"] for s in secretsmanager.list_secrets()["SecretList"])
    assert names == [f"{PREFIX}/gate@globex", f"{PREFIX}/scorer@acme-foods"]
    value = secretsmanager.get_secret_value(SecretId=f"{PREFIX}/scorer@acme-foods")["SecretString"]
    assert json.loads(value) == {"username": "scorer@acme-foods", "password": "second"}
    assert store.password("scorer@acme-foods") == "second"
    tags = secretsmanager.describe_secret(SecretId=f"{PREFIX}/gate@globex")["Tags"]
    assert {t["Key"]: t["Value"] for t in tags} == {
        "mlops.io/role": "gate",
        "mlops.io/customer": "globex",
    }


def test_cli_takes_exactly_one_store():
    parser = registry_admin._parser()
    args = parser.parse_args(["--tracking-uri", "https://m", "--secrets-prefix", PREFIX,
                              "--pipeline", "p:c"])  # fmt: skip
    assert args.identities is None and args.secrets_prefix == PREFIX
    with pytest.raises(SystemExit):
        parser.parse_args(["--tracking-uri", "u", "--identities", "f", "--secrets-prefix", "x",
                           "--pipeline", "p:c"])  # fmt: skip


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ca_and_server_cert(root: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA (as cert-manager's CA issuer holds) and a server certificate for localhost it signed."""
    ca_key, ca, key, csr, cert = (root / f"{name}-{n}" for n in
                                  ("ca.key", "ca.crt", "tls.key", "tls.csr", "tls.crt"))  # fmt: skip
    _openssl("req", "-x509", *NEW_KEY, "-keyout", str(ca_key), "-out",
             str(ca), "-days", "1", "-subj", f"/CN={name}-ca")  # fmt: skip
    _openssl("req", *NEW_KEY, "-keyout", str(key), "-out", str(csr),
             "-subj", "/CN=localhost")  # fmt: skip
    san = root / f"{name}-san.ext"
    san.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca), "-CAkey", str(ca_key),
             "-CAcreateserial", "-out", str(cert), "-days", "1", "-extfile", str(san))  # fmt: skip
    return ca, cert, key


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args) -> None:
        return None


@pytest.fixture(scope="module")
def https_server(tmp_path_factory) -> Iterator[dict[str, Path | str]]:
    root = tmp_path_factory.mktemp("tls")
    ca, cert, key = _ca_and_server_cert(root, "mlflow")
    other_ca, _, _ = _ca_and_server_cert(root, "other")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield {"uri": f"https://localhost:{server.server_address[1]}", "ca": ca, "other": other_ca}
    finally:
        server.shutdown()


def test_probe_trusts_the_configured_ca(https_server, monkeypatch):
    monkeypatch.setenv(tracking.ENV_SERVER_CERT_PATH, str(https_server["ca"]))
    assert tracking.wait_for_server(https_server["uri"], budget_s=5) < 5


def test_probe_refuses_a_server_another_ca_signed(https_server, monkeypatch):
    monkeypatch.setenv(tracking.ENV_SERVER_CERT_PATH, str(https_server["other"]))
    with pytest.raises(StepError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        tracking.wait_for_server(https_server["uri"], budget_s=1.5, sleep=lambda s: None)
