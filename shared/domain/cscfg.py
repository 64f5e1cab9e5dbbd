"""Read and patch a cloud service's configuration (.cscfg) without reformatting it.

Why this module is so careful:

* The platform compares certificate thumbprints *exactly*. A ``Certificate@thumbprint`` must
  be the 40-hex-digit SHA-1 of a certificate the cloud service holds, written in uppercase
  (the schema says so), or the update is refused or the role starts without its certificate.
  So we validate every thumbprint and always write new ones in uppercase.
* Users keep the .cscfg in source control and diff what we wrote against what they had.
  Re-serialising the XML (as ElementTree would) renames namespace prefixes, drops comments,
  re-quotes attributes and rewraps lines, turning a one-line change into a wall of noise. So
  ``rewrite`` never re-serialises: it replaces only the characters of the attribute values
  that change and leaves every other character (BOM, declaration, comments, CRLF, quoting,
  attribute order, whitespace) exactly as it was.
* The text comes from ARM, but anyone able to write the configuration controls it, so it is
  parsed with defusedxml: DTDs, entity declarations and external references are refused
  (XXE, billion laughs), and the size is capped.

Two parsers read the same UTF-8 bytes: defusedxml's ElementTree decides what the document
*means* (``parse``), and plain expat, run only on text ``parse`` has already accepted, reports
*where* each Certificate and Setting start tag begins. Because both see the same bytes with
the same namespace rules, they agree on which elements count; ``rewrite`` still re-parses
its output and refuses to return it unless it reads back exactly as intended.

Everything here is pure: a string in, a string (or a value) out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from xml.etree.ElementTree import Element, ParseError
from xml.parsers import expat

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from shared.domain.errors import InvalidInput

MAX_CSCFG_CHARS = 1_048_576  # refuse larger inputs
NAMESPACE = "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration"

_FIELD = "configuration"
_BOM = "\ufeff"
_NS = {"sc": NAMESPACE}
_THUMBPRINT = re.compile(r"[0-9A-Fa-f]{40}")
# Element paths (local names in NAMESPACE) of the start tags whose attributes we may rewrite.
_CERTIFICATE_PATH = ("ServiceConfiguration", "Role", "Certificates", "Certificate")
_SETTING_PATH = ("ServiceConfiguration", "Role", "ConfigurationSettings", "Setting")
# A well-formed start tag up to its closing '>' (quote-aware: a value may contain '>').
# ASCII so that \s means XML whitespace only.
_START_TAG = re.compile(
    r"""<[^\s/>]+(?P<attributes>(?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*)\s*/?>""",
    re.ASCII,
)
# One attribute; group 3 is the raw value between the quotes.
_ATTRIBUTE = re.compile(r"""([^\s=/>]+)\s*=\s*(["'])(.*?)\2""", re.ASCII | re.DOTALL)


@dataclass(frozen=True)
class CertificateEntry:
    role: str  # Role@name
    name: str  # Certificate@name
    thumbprint: str  # as written in the file (original case)
    algorithm: str  # thumbprintAlgorithm as written ("" if absent)


@dataclass(frozen=True)
class SettingEntry:
    role: str
    name: str
    value: str


@dataclass(frozen=True)
class ServiceConfiguration:
    service_name: str
    roles: tuple[str, ...]
    certificates: tuple[CertificateEntry, ...]
    settings: tuple[SettingEntry, ...]


def parse(cscfg: str) -> ServiceConfiguration:
    """Validate ``cscfg`` and return what it says; raise InvalidInput("configuration", ...)."""
    root = _load(cscfg)
    roles: list[str] = []
    certificates: list[CertificateEntry] = []
    settings: list[SettingEntry] = []
    for role in root.findall("sc:Role", _NS):
        role_name = role.get("name")
        if not role_name:
            raise _invalid("a Role element has no name")
        roles.append(role_name)
        for certificate in role.findall("sc:Certificates/sc:Certificate", _NS):
            certificates.append(_certificate(role_name, certificate))
        for setting in role.findall("sc:ConfigurationSettings/sc:Setting", _NS):
            settings.append(
                SettingEntry(role_name, setting.get("name", ""), setting.get("value", ""))
            )
    return ServiceConfiguration(
        service_name=root.get("serviceName", ""),
        roles=tuple(roles),
        certificates=tuple(certificates),
        settings=tuple(settings),
    )


def rewrite(cscfg: str, thumbprints: Mapping[str, str], *, rewrite_settings: bool = False) -> str:
    """Return ``cscfg`` with each Certificate thumbprint found in ``thumbprints`` replaced.

    Keys match case-insensitively; new thumbprints are written in uppercase. Only the
    characters of the changed attribute values differ from the input. With
    ``rewrite_settings``, old thumbprints inside ``Setting@value`` are replaced too.
    """
    original = parse(cscfg)
    replacements = _replacements(thumbprints)
    if not replacements:
        return cscfg
    substitute = _substituter(replacements)
    bom, data = _encode(cscfg)
    body = cscfg[len(bom) :]
    certificate_offsets, setting_offsets = _locate(data)

    edits: list[tuple[int, int, str]] = []
    for certificate, offset in zip(original.certificates, certificate_offsets, strict=True):
        new = replacements.get(certificate.thumbprint.upper())
        if new is not None:
            start, end = _value_span(body, offset, "thumbprint")
            edits.append((start, end, new))
    if rewrite_settings:
        for setting, offset in zip(original.settings, setting_offsets, strict=True):
            if substitute(setting.value) != setting.value:
                start, end = _value_span(body, offset, "value")
                edits.append((start, end, substitute(body[start:end])))
    result = bom + _splice(body, edits)

    expected = replace(
        original,
        certificates=tuple(
            replace(c, thumbprint=replacements.get(c.thumbprint.upper(), c.thumbprint))
            for c in original.certificates
        ),
        settings=tuple(
            replace(s, value=substitute(s.value)) if rewrite_settings else s
            for s in original.settings
        ),
    )
    if parse(result) != expected:
        raise _invalid(
            "the rewritten configuration does not read back as intended (is a thumbprint "
            "written with character references?); nothing was changed"
        )
    return result


def settings_mentioning(cscfg: str, thumbprints: Iterable[str]) -> tuple[SettingEntry, ...]:
    """The Setting entries whose value contains any of ``thumbprints`` (case-insensitive)."""
    settings = parse(cscfg).settings
    wanted = {_normalise(thumbprint) for thumbprint in thumbprints}
    if not wanted:
        return ()
    pattern = _pattern(wanted)
    return tuple(setting for setting in settings if pattern.search(setting.value))


def _invalid(message: str) -> InvalidInput:
    return InvalidInput(_FIELD, message)


def _clip(value: str) -> str:
    """``repr`` of a user-supplied value, shortened so an error message stays readable."""
    return repr(value if len(value) <= 64 else value[:64] + "...")


def _encode(cscfg: str) -> tuple[str, bytes]:
    """Split off a leading BOM and return it with the rest encoded as UTF-8."""
    if len(cscfg) > MAX_CSCFG_CHARS:
        raise _invalid(f"{len(cscfg)} characters is more than the limit of {MAX_CSCFG_CHARS}")
    bom = _BOM if cscfg.startswith(_BOM) else ""
    try:
        return bom, cscfg[len(bom) :].encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _invalid(f"not valid Unicode text ({exc.reason} at index {exc.start})") from exc


def _load(cscfg: str) -> Element:
    _, data = _encode(cscfg)
    # The text is already decoded, so an encoding declaration describes the file it once
    # was, not these bytes: tell the parser they are UTF-8 whatever the declaration says.
    parser = DefusedXMLParser(
        encoding="utf-8", forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    try:
        parser.feed(data)
        root: Element = parser.close()
    except DefusedXmlException as exc:
        raise _invalid(
            "DOCTYPE/DTD, entity declarations and external references are not allowed "
            f"({type(exc).__name__})"
        ) from exc
    except ParseError as exc:
        raise _invalid(f"malformed XML ({exc})") from exc
    if root.tag != f"{{{NAMESPACE}}}ServiceConfiguration":
        raise _invalid(
            f"the root element must be ServiceConfiguration in namespace {NAMESPACE}, "
            f"not {_clip(root.tag)}"
        )
    return root


def _certificate(role: str, element: Element) -> CertificateEntry:
    name = element.get("name")
    if not name:
        raise _invalid(f"role {role!r}: a Certificate element has no name")
    where = f"role {role!r} certificate {name!r}"
    thumbprint = element.get("thumbprint")
    if thumbprint is None:
        raise _invalid(f"{where}: the thumbprint attribute is missing")
    if not _THUMBPRINT.fullmatch(thumbprint):
        raise _invalid(
            f"{where}: thumbprint {_clip(thumbprint)} is not exactly 40 hexadecimal digits"
        )
    algorithm = element.get("thumbprintAlgorithm")
    if algorithm is not None and algorithm.lower() != "sha1":
        raise _invalid(
            f"{where}: thumbprintAlgorithm {_clip(algorithm)} is not supported (only sha1)"
        )
    return CertificateEntry(role, name, thumbprint, algorithm or "")


def _normalise(thumbprint: str) -> str:
    if not _THUMBPRINT.fullmatch(thumbprint):
        raise InvalidInput(
            "thumbprints", f"{_clip(thumbprint)} is not exactly 40 hexadecimal digits"
        )
    return thumbprint.upper()


def _replacements(thumbprints: Mapping[str, str]) -> dict[str, str]:
    """Validate the old -> new mapping and return it with both sides in uppercase."""
    result: dict[str, str] = {}
    for old, new in thumbprints.items():
        key, value = _normalise(old), _normalise(new)
        if result.setdefault(key, value) != value:
            raise InvalidInput("thumbprints", f"{key} is mapped to two different thumbprints")
    return result


def _pattern(thumbprints: Iterable[str]) -> re.Pattern[str]:
    # ASCII: under Unicode rules some non-ASCII letters would match hex digits.
    alternatives = "|".join(re.escape(t) for t in sorted(thumbprints))
    return re.compile(alternatives, re.IGNORECASE | re.ASCII)


def _substituter(replacements: Mapping[str, str]) -> Callable[[str], str]:
    """A function replacing every old thumbprint (any case) by its new uppercase one."""
    pattern = _pattern(replacements)

    def substitute(text: str) -> str:
        return pattern.sub(lambda match: replacements[match.group().upper()], text)

    return substitute


def _locate(data: bytes) -> tuple[list[int], list[int]]:
    """Character offsets of the Certificate and of the Setting start tags, in document order.

    Run only on bytes ``parse`` accepted (no DTD, so no entities to expand). Elements are
    tracked by local name within NAMESPACE; any other element breaks the path.
    """
    parser = expat.ParserCreate(encoding="utf-8", namespace_separator=" ")
    stack: list[str] = []
    found: dict[tuple[str, ...], list[int]] = {_CERTIFICATE_PATH: [], _SETTING_PATH: []}
    depths = {len(path) for path in found}

    def start(name: str, _attributes: object) -> None:
        namespace, _, local = name.rpartition(" ")
        stack.append(local if namespace == NAMESPACE else "")
        # Only paths of these lengths can match; building a key at every depth would make
        # a deeply nested document (100k levels fit in the size limit) quadratic.
        offsets = found.get(tuple(stack)) if len(stack) in depths else None
        if offsets is not None:
            offsets.append(parser.CurrentByteIndex)

    def end(_name: str) -> None:
        stack.pop()

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.Parse(data, True)
    return (
        _char_offsets(data, found[_CERTIFICATE_PATH]),
        _char_offsets(data, found[_SETTING_PATH]),
    )


def _char_offsets(data: bytes, byte_offsets: list[int]) -> list[int]:
    """Convert ascending byte offsets (each at a '<') into offsets in the decoded text."""
    result: list[int] = []
    chars = previous = 0
    for offset in byte_offsets:
        chars += len(data[previous:offset].decode("utf-8"))
        previous = offset
        result.append(chars)
    return result


def _value_span(text: str, offset: int, attribute: str) -> tuple[int, int]:
    """Span of the raw value of ``attribute`` in the start tag beginning at ``offset``."""
    tag = _START_TAG.match(text, offset)
    if tag is not None:
        for match in _ATTRIBUTE.finditer(text, *tag.span("attributes")):
            if match.group(1) == attribute:
                return match.span(3)
    raise _invalid(f"cannot locate the {attribute} attribute of the start tag at {offset}")


def _splice(text: str, edits: Iterable[tuple[int, int, str]]) -> str:
    """Apply non-overlapping (start, end, replacement) edits to ``text``."""
    pieces: list[str] = []
    previous = 0
    for start, end, replacement in sorted(edits):
        pieces += (text[previous:start], replacement)
        previous = end
    pieces.append(text[previous:])
    return "".join(pieces)
