"""C2PA Content Credentials: a signed manifest in every output that says it is synthetic.

Written and read with the official bindings (``c2pa-python``). The manifest holds one action,
``c2pa.created`` with the IPTC digital source type ``trainedAlgorithmicMedia``, faceloom and its
version as the software agent, and an ``org.faceloom.model`` assertion with the model's facts
(architecture, resolution, crop, training steps). Never the training faces, never a path: the
title is the file's own name.

Formats C2PA has a place for (MP4, MOV, AVI, JPEG, PNG, WebP) get a manifest; others (MKV, WebM)
keep faceloom's label and watermark, and the writer says that no manifest was written.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faceloom import __version__
from faceloom.errors import InputError, OutputError
from faceloom.media.signing import LOCAL_ORG, SigningIdentity, identity

DIGITAL_SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
MODEL_ASSERTION = "org.faceloom.model"
MIME_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".avi": "video/x-msvideo",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
}
"""Suffixes whose files carry a manifest, and their MIME types."""


@dataclass(frozen=True)
class Credentials:
    """What the manifest of an output says, and who signs it.

    Attributes:
        facts: the model's facts (``architecture``, ``resolution``, ``steps``, ...): plain values,
            never faces or paths.
        cert, key: an organisation's certificate chain and key (PEM files); None for the local chain.
        enabled: write a manifest at all.
    """

    facts: Mapping[str, str | int | float] = field(default_factory=dict)
    cert: str | None = None
    key: str | None = None
    enabled: bool = True

    def identity(self) -> SigningIdentity:
        return identity(self.cert, self.key)


DEFAULT_CREDENTIALS = Credentials()
NO_CREDENTIALS = Credentials(enabled=False)


def supports(path: str | Path) -> bool:
    """Whether C2PA has a place for a manifest in a file of this suffix."""
    return Path(path).suffix.lower() in MIME_TYPES


def manifest(title: str, facts: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest definition of an output named ``title`` (a file name, no folder)."""
    assertions: list[dict[str, Any]] = [
        {
            "label": "c2pa.actions.v2",
            "data": {
                "actions": [
                    {
                        "action": "c2pa.created",
                        "digitalSourceType": DIGITAL_SOURCE_TYPE,
                        "softwareAgent": {"name": "faceloom", "version": __version__},
                        "description": "A face swapped in by a model trained with faceloom.",
                    }
                ]
            },
        }
    ]
    if facts:
        assertions.append({"label": MODEL_ASSERTION, "data": {str(k): v for k, v in facts.items()}})
    return {
        "claim_generator_info": [{"name": "faceloom", "version": __version__}],
        "title": Path(title).name,
        "assertions": assertions,
    }


def _algorithm(key_pem: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key = load_pem_private_key(key_pem, password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return {256: b"es256", 384: b"es384", 521: b"es512"}.get(key.curve.key_size, b"es256")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return b"ed25519"
    if isinstance(key, rsa.RSAPrivateKey):
        return b"ps256"
    raise ValueError(f"unsupported signing key type {type(key).__name__}")


def _signer(who: SigningIdentity) -> Any:
    import c2pa

    chain, key = who.read()
    try:
        info = c2pa.C2paSignerInfo(_algorithm(key), chain, key, None)
        return c2pa.Signer.from_info(info)
    except (ValueError, c2pa.C2paError) as exc:
        raise InputError(f"cannot sign with this certificate and key ({exc})", who.chain) from exc


def check_signer(credentials: Credentials) -> None:
    """Make (on first use) and load the signing identity now, so a bad certificate or key is
    reported before any work is done (InputError naming the file)."""
    _signer(credentials.identity())


def sign_stream(source: Any, dest: Any, title: str, credentials: Credentials) -> None:
    """Copy ``source`` to ``dest`` (binary streams) with a signed manifest added."""
    import c2pa

    mime = MIME_TYPES[Path(title).suffix.lower()]
    builder = c2pa.Builder(json.dumps(manifest(title, credentials.facts)))
    try:
        builder.sign(_signer(credentials.identity()), mime, source, dest)
    except c2pa.C2paError as exc:
        raise OutputError(f"cannot add Content Credentials ({exc})", title) from exc


def sign_bytes(data: bytes, title: str, credentials: Credentials) -> bytes:
    """``data`` (a whole file named ``title``) with a signed manifest added."""
    out = io.BytesIO()
    sign_stream(io.BytesIO(data), out, title, credentials)
    return out.getvalue()


def sign_file(source: Path, dest: Path, title: str, credentials: Credentials) -> None:
    """Write ``source`` to ``dest`` (another path) with a signed manifest added."""
    with open(source, "rb") as src, open(dest, "w+b") as dst:
        sign_stream(src, dst, title, credentials)


@dataclass(frozen=True)
class CredentialsReport:
    """What the C2PA library read and validated of a file's manifest.

    Attributes:
        state: the library's validation state: ``Invalid`` (the file or the manifest was changed,
            or the signature does not check), ``Valid`` (intact, signed by a certificate no trust
            list names) or ``Trusted``.
        failures: the codes of the failed checks (``assertion.bmffHash.mismatch``, ...).
        signer: the signing certificate's common name and organisation.
        local: signed by faceloom's local, untrusted certificate.
        synthetic: its action says ``trainedAlgorithmicMedia``.
        generator: the claim generator (``faceloom 0.1.0``).
        model: the model's facts, when faceloom wrote it.
    """

    state: str
    failures: list[str]
    signer: str | None
    local: bool
    synthetic: bool
    generator: str | None
    model: dict[str, Any] | None

    @property
    def valid(self) -> bool:
        return self.state in ("Valid", "Trusted")

    def to_dict(self) -> dict[str, Any]:
        return {
            "present": True,
            "validation_state": self.state,
            "valid": self.valid,
            "failures": self.failures,
            "signer": self.signer,
            "local_untrusted": self.local,
            "digital_source_type": DIGITAL_SOURCE_TYPE if self.synthetic else None,
            "generator": self.generator,
            "model": self.model,
        }


def read_credentials(path: str | Path) -> CredentialsReport | None:
    """The manifest of ``path`` as the C2PA library reads and validates it; None without one."""
    import c2pa

    path = Path(path)
    mime = MIME_TYPES.get(path.suffix.lower())
    if mime is None:
        return None
    try:
        with open(path, "rb") as fh:
            reader = c2pa.Reader(mime, fh)
            store = json.loads(reader.json())
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror or exc})", path) from exc
    except c2pa.C2paError:
        return None  # no manifest (or none the library can find)
    active = store.get("manifests", {}).get(store.get("active_manifest", ""), {})
    results = store.get("validation_results", {}).get("activeManifest", {})
    failures = [str(f.get("code")) for f in results.get("failure", [])]
    sig = active.get("signature_info", {})
    issuer, common = sig.get("issuer"), sig.get("common_name")
    actions = [
        a
        for assertion in active.get("assertions", [])
        if str(assertion.get("label", "")).startswith("c2pa.actions")
        for a in assertion.get("data", {}).get("actions", [])
    ]
    model = next(
        (a.get("data") for a in active.get("assertions", []) if a.get("label") == MODEL_ASSERTION), None
    )
    generators = active.get("claim_generator_info") or [{}]
    generator = " ".join(str(generators[0].get(k)) for k in ("name", "version") if generators[0].get(k))
    return CredentialsReport(
        state=str(store.get("validation_state", "Invalid")),
        failures=failures,
        signer=", ".join(str(x) for x in (common, issuer) if x) or None,
        local=issuer == LOCAL_ORG,
        synthetic=any(a.get("digitalSourceType") == DIGITAL_SOURCE_TYPE for a in actions),
        generator=generator or None,
        model=model,
    )
