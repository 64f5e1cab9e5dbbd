"""The X.509 side of the Key Vault emulator: keys, self-signed certificates, CSRs, PFX/PEM.

Theory of operation: Key Vault certificates are real certificates, and the product
computes thumbprints, reads PFX secrets and hands them to Cloud Services, so everything
here produces real DER/PKCS#12/PEM with the ``cryptography`` package rather than
placeholders. Policies arrive in Key Vault's wire vocabulary (``key_usage`` names such as
``digitalSignature``, SAN lists named ``dns_names``/``emails``/``upns``/``uris``/
``ipAddresses``, subjects written Windows-style, most specific RDN first, e.g.
``CN=web, O=Contoso``), and ``describe`` turns an imported certificate back into that
vocabulary so an import gets the derived policy Key Vault shows. Functions raise
``CertError`` with a Key Vault style message for anything a client could send wrong.
"""

from __future__ import annotations

import base64
import calendar
import datetime as dt
import hashlib
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID, ObjectIdentifier

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PFX = "application/x-pkcs12"
PEM = "application/x-pem-file"
RSA_SIZES = (2048, 3072, 4096)
CURVES: dict[str, ec.EllipticCurve] = {
    "P-256": ec.SECP256R1(),
    "P-384": ec.SECP384R1(),
    "P-521": ec.SECP521R1(),
    "P-256K": ec.SECP256K1(),
}
_CURVE_NAMES = {type(curve).__name__: name for name, curve in CURVES.items()}
# Key Vault backdates self-signed certificates by ten minutes (seen in service recordings).
BACKDATE = dt.timedelta(minutes=10)
UPN_OID = ObjectIdentifier("1.3.6.1.4.1.311.20.2.3")
KEY_USAGES = (
    "digitalSignature", "nonRepudiation", "keyEncipherment", "dataEncipherment",
    "keyAgreement", "keyCertSign", "cRLSign", "encipherOnly", "decipherOnly",
)
_SUBJECT_TYPES: dict[str, x509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "L": NameOID.LOCALITY_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "C": NameOID.COUNTRY_NAME, "E": NameOID.EMAIL_ADDRESS, "EMAIL": NameOID.EMAIL_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT, "STREET": NameOID.STREET_ADDRESS,
    "SERIALNUMBER": NameOID.SERIAL_NUMBER, "T": NameOID.TITLE, "G": NameOID.GIVEN_NAME,
    "SN": NameOID.SURNAME, "POSTALCODE": NameOID.POSTAL_CODE,
}
_SUBJECT_NAMES = {
    NameOID.COMMON_NAME: "CN", NameOID.ORGANIZATION_NAME: "O",
    NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.LOCALITY_NAME: "L",
    NameOID.STATE_OR_PROVINCE_NAME: "S", NameOID.COUNTRY_NAME: "C",
    NameOID.EMAIL_ADDRESS: "E", NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.STREET_ADDRESS: "STREET", NameOID.SERIAL_NUMBER: "SERIALNUMBER",
    NameOID.TITLE: "T", NameOID.GIVEN_NAME: "G", NameOID.SURNAME: "SN",
    NameOID.POSTAL_CODE: "PostalCode",
}


class CertError(ValueError):
    """A request that Key Vault would refuse with 400 BadParameter; the text is the message."""


@dataclass(frozen=True)
class X509Spec:
    """What a policy's ``x509_props`` asks for, parsed and checked."""

    subject: x509.Name
    sans: dict[str, list[str]]
    ekus: tuple[str, ...]
    key_usage: tuple[str, ...]
    validity_months: int


@dataclass(frozen=True)
class Imported:
    key: PrivateKey
    cert: x509.Certificate
    chain: tuple[x509.Certificate, ...]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def x5t(cert: x509.Certificate) -> str:
    """Key Vault's ``x5t``: base64url SHA-1 of the DER certificate, no padding."""
    return base64.urlsafe_b64encode(hashlib.sha1(der(cert)).digest()).rstrip(b"=").decode()


def thumbprint(cert: x509.Certificate) -> str:
    """The cscfg / Windows thumbprint: upper-case hex SHA-1 of the DER certificate."""
    return hashlib.sha1(der(cert)).hexdigest().upper()


def unix(moment: dt.datetime) -> int:
    return int(moment.timestamp())


def add_months(moment: dt.datetime, months: int) -> dt.datetime:
    """Calendar months, clamping the day (Jan 31 + 1 month = Feb 28/29), like .NET AddMonths."""
    total = moment.month - 1 + months
    year, month = moment.year + total // 12, total % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


# -- keys ---------------------------------------------------------------------------------

def generate_key(kty: str, key_size: int | None, curve: str | None) -> PrivateKey:
    """A new key as ``key_props`` describes it (already validated by ``key_shape``)."""
    if kty.upper().startswith("EC"):
        return ec.generate_private_key(CURVES[curve or "P-256"])
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size or 2048)


def key_shape(kty: str, key_size: Any, curve: Any) -> tuple[str, int, str | None]:
    """Validate ``kty``/``key_size``/``crv`` and fill defaults: (kty, key_size, crv)."""
    kind = kty.upper()
    if kind in ("RSA", "RSA-HSM"):
        size = 2048 if key_size is None else key_size
        if size not in RSA_SIZES:
            raise CertError(f"The key size {size} is not supported for key type {kty}. "
                            f"Supported sizes: {', '.join(map(str, RSA_SIZES))}.")
        return kty, int(size), None
    if kind in ("EC", "EC-HSM"):
        name = curve or {None: "P-256", 256: "P-256", 384: "P-384", 521: "P-521"}.get(key_size)
        if name not in CURVES:
            raise CertError(f"The curve '{curve}' is not supported. Supported curves: "
                            f"{', '.join(CURVES)}.")
        bits = CURVES[name].key_size
        if key_size is not None and key_size != bits:
            raise CertError(f"The key size {key_size} does not match the curve {name}.")
        return kty, bits, name
    raise CertError(f"The key type '{kty}' is not supported for certificates. "
                    "Supported types: RSA, RSA-HSM, EC, EC-HSM.")


def describe_key(key: PrivateKey) -> tuple[str, int, str | None]:
    if isinstance(key, rsa.RSAPrivateKey):
        return "RSA", key.key_size, None
    return "EC", key.curve.key_size, _CURVE_NAMES.get(type(key.curve).__name__)


def same_public_key(key: PrivateKey, cert: x509.Certificate) -> bool:
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    mine = key.public_key().public_bytes(serialization.Encoding.DER, fmt)
    return mine == cert.public_key().public_bytes(serialization.Encoding.DER, fmt)


# -- policies -----------------------------------------------------------------------------

def parse_subject(subject: str) -> x509.Name:
    """``CN=web, O=Contoso`` (most specific first, Windows/Key Vault style) -> x509.Name."""
    parts = [p.strip() for p in re.split(r"(?<!\\)[,;]", subject) if p.strip()]
    if not parts:
        raise CertError("The subject name is empty.")
    attributes = []
    for part in parts:
        kind, sep, value = part.partition("=")
        oid = _SUBJECT_TYPES.get(kind.strip().upper())
        value = value.strip().strip('"').replace("\\,", ",").replace("\\;", ";")
        if not sep or oid is None or not value:
            raise CertError(f"The subject name '{subject}' is invalid: unsupported or empty "
                            f"relative distinguished name '{part}'.")
        if oid == NameOID.COUNTRY_NAME and len(value) != 2:
            raise CertError(f"The subject name '{subject}' is invalid: C must be two letters.")
        attributes.append(x509.NameAttribute(oid, value))
    return x509.Name(list(reversed(attributes)))


def format_subject(name: x509.Name) -> str:
    parts = []
    for attribute in reversed(list(name)):
        label = _SUBJECT_NAMES.get(attribute.oid, attribute.oid.dotted_string)
        parts.append(f"{label}={attribute.value!s}")
    return ", ".join(parts)


def _general_names(sans: dict[str, list[str]]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(d) for d in sans.get("dns_names", [])]
    names += [x509.RFC822Name(e) for e in sans.get("emails", [])]
    names += [x509.OtherName(UPN_OID, _utf8_der(u)) for u in sans.get("upns", [])]
    names += [x509.UniformResourceIdentifier(u) for u in sans.get("uris", [])]
    for ip in sans.get("ipAddresses", []):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as exc:
            raise CertError(f"The IP address '{ip}' in the subject alternative names is "
                            "invalid.") from exc
    return names


def _utf8_der(text: str) -> bytes:
    data = text.encode()
    if len(data) > 127:
        raise CertError("A UPN in the subject alternative names is too long.")
    return bytes([0x0C, len(data)]) + data


def _key_usage(names: Sequence[str]) -> x509.KeyUsage:
    wanted = set(names)
    return x509.KeyUsage(
        digital_signature="digitalSignature" in wanted,
        content_commitment="nonRepudiation" in wanted,
        key_encipherment="keyEncipherment" in wanted,
        data_encipherment="dataEncipherment" in wanted,
        key_agreement="keyAgreement" in wanted,
        key_cert_sign="keyCertSign" in wanted,
        crl_sign="cRLSign" in wanted,
        encipher_only="encipherOnly" in wanted,
        decipher_only="decipherOnly" in wanted,
    )


def _extensions(spec: X509Spec) -> list[tuple[x509.ExtensionType, bool]]:
    out: list[tuple[x509.ExtensionType, bool]] = []
    if spec.key_usage:
        out.append((_key_usage(spec.key_usage), True))
    out.append((x509.BasicConstraints(ca=False, path_length=None), False))
    if spec.ekus:
        out.append((x509.ExtendedKeyUsage([ObjectIdentifier(e) for e in spec.ekus]), False))
    names = _general_names(spec.sans)
    if names:
        out.append((x509.SubjectAlternativeName(names), False))
    return out


def build_csr(key: PrivateKey, spec: X509Spec) -> bytes:
    """The PKCS#10 request Key Vault shows in a pending operation (DER)."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(spec.subject)
    for extension, critical in _extensions(spec):
        builder = builder.add_extension(extension, critical)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def self_sign(key: PrivateKey, spec: X509Spec, now: dt.datetime) -> x509.Certificate:
    """A ``Self`` issuer certificate: backdated ten minutes, valid ``validity_months``."""
    now = now.replace(microsecond=0)
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject)
        .issuer_name(spec.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(add_months(now, spec.validity_months))
    )
    for extension, critical in _extensions(spec):
        builder = builder.add_extension(extension, critical)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = builder.add_extension(ski, False).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False)
    return builder.sign(key, hashes.SHA256())


def describe(cert: x509.Certificate) -> dict[str, Any]:
    """``x509_props`` as Key Vault derives them from an imported or merged certificate."""
    props: dict[str, Any] = {"subject": format_subject(cert.subject)}
    sans: dict[str, list[str]] = {}
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        for label, kind in (("dns_names", x509.DNSName), ("emails", x509.RFC822Name),
                            ("uris", x509.UniformResourceIdentifier)):
            values = [str(v) for v in san.get_values_for_type(kind)]
            if values:
                sans[label] = values
        ips = [str(v) for v in san.get_values_for_type(x509.IPAddress)]
        if ips:
            sans["ipAddresses"] = ips
        upns = [o.value[2:].decode(errors="replace")
                for o in san.get_values_for_type(x509.OtherName) if o.type_id == UPN_OID]
        if upns:
            sans["upns"] = upns
    if sans:
        props["sans"] = sans
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        props["ekus"] = [oid.dotted_string for oid in eku]
    except x509.ExtensionNotFound:
        props["ekus"] = []
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        props["key_usage"] = [name for name in KEY_USAGES if _has_usage(usage, name)]
    except x509.ExtensionNotFound:
        props["key_usage"] = []
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    months = (end.year - start.year) * 12 + end.month - start.month
    months += 1 if end.day > start.day else 0
    props["validity_months"] = min(MAX_VALIDITY_MONTHS, max(1, months))
    return props


def _has_usage(usage: x509.KeyUsage, name: str) -> bool:
    attribute = {
        "digitalSignature": "digital_signature", "nonRepudiation": "content_commitment",
        "keyEncipherment": "key_encipherment", "dataEncipherment": "data_encipherment",
        "keyAgreement": "key_agreement", "keyCertSign": "key_cert_sign", "cRLSign": "crl_sign",
        "encipherOnly": "encipher_only", "decipherOnly": "decipher_only",
    }[name]
    try:
        return bool(getattr(usage, attribute))
    except ValueError:  # encipher/decipher_only are undefined without keyAgreement
        return False


# -- import and export --------------------------------------------------------------------

def load_import(value: str, password: str | None, content_type: str) -> Imported:
    """Read an import body's ``value`` in the format the policy's content type names."""
    text = value.strip()
    if content_type == PEM:
        if not text.startswith("-----BEGIN"):
            try:
                text = base64.b64decode(text, validate=True).decode()
            except (ValueError, UnicodeDecodeError) as exc:
                raise CertError(_PEM_FORMAT) from exc
        return _load_pem(text, password)
    try:
        data = base64.b64decode(text, validate=True)
        key, cert, extra = pkcs12.load_key_and_certificates(
            data, password.encode() if password else None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertError("The specified PKCS#12 X.509 certificate content can not be read. "
                        "Please check if certificate is in valid PKCS#12 format.") from exc
    certs = ([cert] if cert else []) + list(extra)
    return _pair(key, certs)


_PEM_FORMAT = ("The specified PEM X.509 certificate content is in an unexpected format. "
               "Please check if certificate is in valid PEM format.")


def _load_pem(text: str, password: str | None) -> Imported:
    blocks = re.findall(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", text, re.S)
    key_blocks = [m.group(0) for m in re.finditer(
        r"-----BEGIN ((?:ENCRYPTED |RSA |EC )?PRIVATE KEY)-----.*?-----END \1-----", text, re.S)]
    if not blocks:
        raise CertError(_PEM_FORMAT)
    if not key_blocks:
        raise CertError("Private key is not specified in the specified X.509 PEM certificate "
                        "content. Please specify private key in the X.509 PEM certificate "
                        "content.")
    try:
        key = serialization.load_pem_private_key(
            key_blocks[0].encode(), password.encode() if password else None)
        certs = x509.load_pem_x509_certificates(text.encode())
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertError(_PEM_FORMAT) from exc
    return _pair(key, certs)


def _pair(key: Any, certs: list[x509.Certificate]) -> Imported:
    if key is None:
        raise CertError("Private key is not specified in the specified X.509 certificate "
                        "content. Please specify private key in the X.509 certificate content.")
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise CertError("The private key type is not supported. Supported types: RSA, EC.")
    leaf = next((c for c in certs if same_public_key(key, c)), None)
    if leaf is None:
        raise CertError("The specified X.509 certificate content does not contain a "
                        "certificate matching the private key.")
    return Imported(key, leaf, tuple(c for c in certs if c is not leaf))


def export_pfx(key: PrivateKey | None, cert: x509.Certificate,
               chain: Sequence[x509.Certificate]) -> bytes:
    """The secret value of a PKCS#12 certificate: no password, key only if exportable."""
    return pkcs12.serialize_key_and_certificates(
        None, key, cert, list(chain) or None, serialization.NoEncryption())


def export_pem(key: PrivateKey | None, cert: x509.Certificate,
               chain: Sequence[x509.Certificate]) -> str:
    """The secret value of a PEM certificate: PKCS#8 key first, then leaf and chain."""
    out = ""
    if key is not None:
        out += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
    for item in (cert, *chain):
        out += item.public_bytes(serialization.Encoding.PEM).decode()
    return out


def load_x5c(items: Sequence[Any]) -> list[x509.Certificate]:
    """The ``x5c`` of a merge: base64 DER certificates, leaf first."""
    if not items:
        raise CertError("The x5c property is required and must contain at least one "
                        "certificate.")
    certs = []
    for item in items:
        try:
            certs.append(x509.load_der_x509_certificate(base64.b64decode(str(item))))
        except ValueError as exc:
            raise CertError("The x5c property contains a value that is not a base64 DER "
                            "X.509 certificate.") from exc
    return certs


# -- the certificate policy (wire JSON, snake_case as Key Vault sends it) -------------------

SERVER_AUTH, CLIENT_AUTH = "1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"
ACTIONS = {"autorenew": "AutoRenew", "emailcontacts": "EmailContacts"}
MAX_VALIDITY_MONTHS = 1200


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    value = raw.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CertError(f"The policy property '{name}' must be an object.")
    return value


def normalize_policy(raw: Any, created: int, now: int) -> dict[str, Any]:
    """Validate a policy and fill Key Vault's defaults, as the service echoes it back.

    The defaults (RSA 2048 exportable, PKCS#12, serverAuth+clientAuth,
    digitalSignature+keyEncipherment, 12 months, AutoRenew at 80% for ``Self`` and
    EmailContacts at 80% otherwise, ``basic_constraints.ca`` false) are those real
    responses show for a policy that gave only a subject and an issuer.
    """
    if not isinstance(raw, dict):
        raise CertError("The certificate policy must be a JSON object.")
    key_in = _section(raw, "key_props")
    kty, size, crv = key_shape(str(key_in.get("kty") or "RSA"), key_in.get("key_size"),
                               key_in.get("crv"))
    key_props: dict[str, Any] = {
        "exportable": bool(key_in.get("exportable", True)), "kty": kty, "key_size": size,
        "reuse_key": bool(key_in.get("reuse_key", False)),
    }
    if crv:
        key_props["crv"] = crv
    content_type = _section(raw, "secret_props").get("contentType") or PFX
    if content_type not in (PFX, PEM):
        raise CertError(f"The content type '{content_type}' is not supported. Supported "
                        f"content types: {PFX}, {PEM}.")
    x509_in = _section(raw, "x509_props")
    sans = x509_in.get("sans") or {}
    if not isinstance(sans, dict) or not all(
        k in ("emails", "dns_names", "upns", "uris", "ipAddresses") and _strings(v)
        for k, v in sans.items()
    ):
        raise CertError("The subject alternative names in the policy are invalid.")
    subject = x509_in.get("subject")
    if subject is not None and not isinstance(subject, str):
        raise CertError("The subject in the policy's x509_props must be a string.")
    for name in ("ekus", "key_usage"):
        if x509_in.get(name) is not None and not _strings(x509_in[name]):
            raise CertError(f"The policy's x509_props.{name} must be a list of strings.")
    if not subject and not any(sans.values()):
        raise CertError("Either the subject or the subject alternative names must be "
                        "specified in the policy's x509_props.")
    default_usage = ["digitalSignature", "keyEncipherment"] if kty.upper().startswith("RSA") \
        else ["digitalSignature"]
    usages = list(x509_in.get("key_usage") or default_usage)
    unknown = [u for u in usages if u not in KEY_USAGES]
    if unknown:
        raise CertError(f"The key usage '{unknown[0]}' is not valid.")
    months = x509_in.get("validity_months", 12)
    if not isinstance(months, int) or not 1 <= months <= MAX_VALIDITY_MONTHS:
        raise CertError(f"The validity_months value '{months}' is invalid. It must be between "
                        f"1 and {MAX_VALIDITY_MONTHS}.")
    x509_props: dict[str, Any] = {
        "subject": subject or "", "sans": {k: list(v) for k, v in sans.items() if v},
        "ekus": list(x509_in.get("ekus") or [SERVER_AUTH, CLIENT_AUTH]),
        "key_usage": usages, "validity_months": months, "basic_constraints": {"ca": False},
    }
    if not x509_props["sans"]:
        del x509_props["sans"]  # Key Vault leaves out empty SANs (recorded import answer)
    issuer = {k: v for k, v in _section(raw, "issuer").items() if v is not None}
    issuer.setdefault("name", "Unknown")
    is_self = str(issuer["name"]).lower() == "self"
    if is_self:
        issuer["name"] = "Self"
    elif str(issuer["name"]).lower() == "unknown":
        issuer["name"] = "Unknown"
    actions = raw.get("lifetime_actions")
    if actions is None:
        actions = [{"trigger": {"lifetime_percentage": 80},
                    "action": {"action_type": "AutoRenew" if is_self else "EmailContacts"}}]
    policy_attrs = _section(raw, "attributes")
    return {
        "key_props": key_props,
        "secret_props": {"contentType": content_type},
        "x509_props": x509_props,
        "lifetime_actions": [_lifetime_action(a, months) for a in actions],
        "issuer": issuer,
        "attributes": {"enabled": bool(policy_attrs.get("enabled", True)),
                       "created": created, "updated": now},
    }


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def _lifetime_action(item: Any, months: int) -> dict[str, Any]:
    trigger = item.get("trigger") if isinstance(item, dict) else None
    action = item.get("action") if isinstance(item, dict) else None
    if not isinstance(trigger, dict) or not isinstance(action, dict):
        raise CertError("A lifetime action needs a trigger and an action.")
    kind = ACTIONS.get(str(action.get("action_type", "")).lower())
    if kind is None:
        raise CertError(f"The lifetime action type '{action.get('action_type')}' is not "
                        "supported. Supported types: AutoRenew, EmailContacts.")
    percentage, days = trigger.get("lifetime_percentage"), trigger.get("days_before_expiry")
    if (percentage is None) == (days is None):
        raise CertError("A lifetime action trigger needs exactly one of lifetime_percentage "
                        "and days_before_expiry.")
    if percentage is not None:
        if not isinstance(percentage, int) or not 1 <= percentage <= 99:
            raise CertError("lifetime_percentage must be between 1 and 99.")
        return {"trigger": {"lifetime_percentage": percentage}, "action": {"action_type": kind}}
    if not isinstance(days, int) or not 1 <= days <= months * 27:
        raise CertError(f"days_before_expiry must be between 1 and {months * 27} "
                        "(validity_months x 27).")
    return {"trigger": {"days_before_expiry": days}, "action": {"action_type": kind}}


def x509_spec(policy: dict[str, Any]) -> X509Spec:
    props = policy["x509_props"]
    subject = props["subject"] or ""
    name = parse_subject(subject) if subject else x509.Name([])
    spec = X509Spec(name, dict(props.get("sans") or {}), tuple(props["ekus"]),
                    tuple(props["key_usage"]), int(props["validity_months"]))
    try:
        for eku in spec.ekus:
            ObjectIdentifier(eku)
    except ValueError as exc:
        raise CertError(f"The enhanced key usage list {list(spec.ekus)} contains an invalid "
                        "OID.") from exc
    _general_names(spec.sans)
    return spec


def renewal_time(policy: dict[str, Any], not_before: dt.datetime,
                 not_after: dt.datetime) -> dt.datetime | None:
    """When an AutoRenew lifetime action fires for a version, or None if it never does."""
    for item in policy["lifetime_actions"]:
        if item["action"]["action_type"] != "AutoRenew":
            continue
        trigger = item["trigger"]
        if "lifetime_percentage" in trigger:
            share = int(trigger["lifetime_percentage"]) / 100
            return not_before + (not_after - not_before) * share
        return not_after - dt.timedelta(days=int(trigger["days_before_expiry"]))
    return None
