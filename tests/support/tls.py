"""A throwaway CA and a server certificate for 127.0.0.1 and localhost, made with the openssl
CLI (as scripts/kafka makes the broker's), for tests that serve HTTPS."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SERVER_EXTENSIONS = """\
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
"""


@dataclass(frozen=True)
class ServerTls:
    ca_cert: Path  # what a client trusts (--ca-file)
    cert: Path  # the server's certificate (--ssl-certfile)
    key: Path  # its private key, mode 0600 (--ssl-keyfile)


def make_server_tls(directory: Path) -> ServerTls:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("these tests need the openssl CLI: apt-get install -y openssl")

    def run(*args: str | Path) -> None:
        subprocess.run([openssl, *map(str, args)], check=True, capture_output=True)

    new_key = ("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out")
    tls = ServerTls(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca_key, csr, ext = directory / "ca.key", directory / "server.csr", directory / "server.ext"
    run(*new_key, ca_key)
    run(
        "req", "-x509", "-new", "-key", ca_key, "-sha256", "-days", "2",
        "-subj", f"/CN=invctl test CA {secrets.token_hex(4)}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-out", tls.ca_cert,
    )  # fmt: skip
    run(*new_key, tls.key)
    run("req", "-new", "-key", tls.key, "-subj", "/CN=localhost", "-out", csr)
    ext.write_text(SERVER_EXTENSIONS)
    run(
        "x509", "-req", "-in", csr, "-CA", tls.ca_cert, "-CAkey", ca_key,
        "-set_serial", f"0x{secrets.token_hex(16)}", "-days", "2", "-sha256",
        "-extfile", ext, "-out", tls.cert,
    )  # fmt: skip
    tls.key.chmod(0o600)
    return tls
