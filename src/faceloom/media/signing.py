"""Who signs faceloom's Content Credentials: an organisation's certificate, or a local one.

With no set-up faceloom makes a local certificate chain once (a root and a signing certificate,
ECDSA P-256), kept in the user's config folder (``$FACELOOM_CONFIG``, else
``$XDG_CONFIG_HOME/faceloom``, else ``~/.config/faceloom``) under ``c2pa/``, the private key with
mode 600. Nobody outside this machine trusts it: `faceloom verify` says so. ``--c2pa-cert`` and
``--c2pa-key`` (PEM files: the certificate chain, signing certificate first, and its key) sign
with an organisation's certificate instead.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from faceloom.errors import InputError, output_error_from_os

LOCAL_ORG = "faceloom local signer (untrusted)"
"""Organisation name of the local chain's certificates: how `verify` knows a local signature."""

CHAIN_FILE = "chain.pem"
KEY_FILE = "key.pem"
VALID_DAYS = 3650


def config_dir() -> Path:
    """faceloom's folder in the user's config: $FACELOOM_CONFIG, $XDG_CONFIG_HOME/faceloom or
    ~/.config/faceloom."""
    if os.environ.get("FACELOOM_CONFIG"):
        return Path(os.environ["FACELOOM_CONFIG"])
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "faceloom"


@dataclass(frozen=True)
class SigningIdentity:
    """A certificate chain (PEM, signing certificate first) and its private key (PEM)."""

    chain: Path
    key: Path
    local: bool = False

    def read(self) -> tuple[bytes, bytes]:
        """(chain PEM, key PEM); InputError naming the file that cannot be read."""
        out = []
        for path in (self.chain, self.key):
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise InputError(f"cannot read ({exc.strerror or exc})", path) from exc
            if b"-----BEGIN" not in data:
                raise InputError("not a PEM file", path)
            out.append(data)
        return out[0], out[1]


def identity(cert: str | Path | None = None, key: str | Path | None = None) -> SigningIdentity:
    """The organisation's identity when ``cert`` and ``key`` are given, else the local one."""
    if (cert is None) != (key is None):
        raise InputError("--c2pa-cert and --c2pa-key go together: the certificate chain and its key")
    if cert is not None and key is not None:
        return SigningIdentity(Path(cert), Path(key))
    return local_identity()


def local_identity() -> SigningIdentity:
    """The local chain, made on first use (atomically: concurrent processes end with one chain)."""
    folder = config_dir() / "c2pa"
    if not (folder / CHAIN_FILE).is_file() or not (folder / KEY_FILE).is_file():
        _make_local_chain(folder)
    return SigningIdentity(folder / CHAIN_FILE, folder / KEY_FILE, local=True)


UNUSED_KEY_USAGES: dict[str, bool] = dict.fromkeys(
    (
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "encipher_only",
        "decipher_only",
    ),
    False,
)
"""The X.509 key usages no certificate of a signing chain needs, all off."""


def _make_local_chain(folder: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def name(common: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, common),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, LOCAL_ORG),
            ]
        )

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(days=1), now + datetime.timedelta(days=VALID_DAYS)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = (
        x509.CertificateBuilder()
        .subject_name(name("faceloom local root"))
        .issuer_name(name("faceloom local root"))
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=False, key_cert_sign=True, crl_sign=True, **UNUSED_KEY_USAGES),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()), critical=False)
        .sign(root_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(name("faceloom on this machine"))
        .issuer_name(root.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False, **UNUSED_KEY_USAGES),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), critical=False
        )
        .sign(root_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    chain = leaf.public_bytes(pem) + root.public_bytes(pem)
    private = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".c2pa-", dir=folder.parent))
        os.chmod(tmp, 0o700)
        fd = os.open(tmp / KEY_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(private)
        (tmp / CHAIN_FILE).write_bytes(chain)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process made it first: theirs is kept
            shutil.rmtree(tmp, ignore_errors=True)
            if not (folder / KEY_FILE).is_file():
                raise
    except OSError as exc:
        raise output_error_from_os(exc, folder) from exc
