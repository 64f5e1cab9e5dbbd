"""Which .cspkg blobs the app may deploy: the ``cert-rotation-package`` tag, parsed strictly.

Theory of operation
-------------------
A tag is written by anyone who may write tags on the cloud service (Tag Contributor), a
far smaller right than deploying it. So the tag is *data*, never a destination: before the
app sends its storage token anywhere or signs a SAS, the tag must parse, character by
character, to ``{allow-listed container URL}/{blob name}``, where the container URLs come
from the operator's ``PACKAGE_CONTAINERS`` setting (the containers infra granted the app
read on). Parsing is done on the raw text, not through ``urllib`` normalisation, because
every normalisation is a chance for two parsers to disagree (``%3F`` becoming ``?`` after
the check, ``user@`` hiding the real host, ``..`` walking out of the container).

The rules (each refusal names the rule broken and never echoes userinfo or blob facts):

1. ``https`` only; no userinfo; no query; no fragment; no whitespace or control characters;
2. no percent-encoded ``/ ? # @ %`` (the characters that change how a URL is split);
3. the origin (host and port) and container path equal one allow-listed container exactly;
   an explicit port is therefore accepted only where the allow-listed URL has the same one
   (the local stack's Azurite);
4. a non-empty blob name with no empty, ``.`` or ``..`` segment.

Everything here is pure; :class:`PackageRef` is the only type the storage adapter accepts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import unquote

from shared.domain.errors import ConfigError, InvalidInput
from shared.domain.model import PACKAGE_TAG

_ENCODED_SEPARATOR = re.compile(r"%(2f|3f|23|40|25)", re.IGNORECASE)
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
# Storage account names: 3-24 lowercase letters and digits; containers 3-63 of [a-z0-9-].
_ACCOUNT = re.compile(r"[a-z0-9]{3,24}")
_CONTAINER = re.compile(r"[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}")
_HOST = re.compile(r"[a-z0-9.-]+(?::[0-9]{1,5})?")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


class PackageRule(StrEnum):
    """Why a package tag was refused: one reason constant per rule, with its message."""

    HTTPS = "must be an https URL"
    USERINFO = "must not carry a user name or password"
    QUERY = "must not carry a query string or SAS (the app signs its own)"
    FRAGMENT = "must not carry a fragment (#)"
    CHARACTERS = "must not contain spaces or control characters"
    ENCODED = "must not percent-encode '/', '?', '#', '@' or '%'"
    CONTAINER = "must name a blob in a container listed in PACKAGE_CONTAINERS"
    BLOB = "must name a blob inside the container (not the container itself)"
    SEGMENTS = "must not contain empty, '.' or '..' path segments"


class PackageRefused(InvalidInput):
    """A package tag (or an operator's package URL) broke one of the rules; ``rule`` says
    which. Bad input, not a transient state: the service is refused until the tag is fixed."""

    def __init__(self, rule: PackageRule) -> None:
        super().__init__(PACKAGE_TAG, rule.value)
        self.rule = rule


@dataclass(frozen=True)
class ContainerRef:
    """An allow-listed container: ``https://{origin}/{path}`` (path: ``container``, or
    ``account/container`` for the path-style URLs of the local stack's Azurite)."""

    origin: str  # lowercase host[:port]
    path: str  # without slashes at either end
    account: str
    container: str

    @property
    def url(self) -> str:
        return f"https://{self.origin}/{self.path}"

    @property
    def account_url(self) -> str:
        """The blob service endpoint (what BlobServiceClient takes)."""
        prefix = self.path.rsplit("/", 1)[0] if "/" in self.path else ""
        return f"https://{self.origin}" + (f"/{prefix}" if prefix else "")

    @classmethod
    def parse(cls, text: str, storage_suffix: str) -> ContainerRef:
        """One ``PACKAGE_CONTAINERS`` entry; ConfigError naming what is wrong.

        In Azure the account is the host's first label under ``blob.{storage_suffix}``; a
        loopback origin (the local stack) names it as the path's first segment instead.
        """
        raw = text.strip()
        where = f"PACKAGE_CONTAINERS entry {raw!r}"
        if not raw.lower().startswith("https://"):
            raise ConfigError(f"{where} must start with https://")
        rest = raw[len("https://") :].rstrip("/")
        origin, _, path = rest.partition("/")
        origin = origin.lower()
        if any(c in raw for c in "?#@%") or _CONTROL_OR_SPACE.search(raw):
            raise ConfigError(f"{where} must be a plain container URL (no query, '@' or '%')")
        if not _HOST.fullmatch(origin):
            raise ConfigError(f"{where} has an invalid host")
        segments = path.split("/") if path else []
        host = origin.rsplit(":", 1)[0] if not origin.startswith("[") else origin
        loopback = host in LOOPBACK_HOSTS
        if loopback and len(segments) == 2:
            account, container = segments
        elif not loopback and len(segments) == 1:
            suffix = f".blob.{storage_suffix.strip('.').lower()}"
            if ":" in origin or not origin.endswith(suffix):
                raise ConfigError(
                    f"{where} must be https://ACCOUNT{suffix}/CONTAINER (no port)"
                )
            account, container = origin.removesuffix(suffix), segments[0]
        else:
            raise ConfigError(
                f"{where} must be https://ACCOUNT.blob.{storage_suffix}/CONTAINER"
            )
        if not _ACCOUNT.fullmatch(account) or not _CONTAINER.fullmatch(container):
            raise ConfigError(f"{where} names an invalid storage account or container")
        return cls(origin, "/".join(segments), account, container)


@dataclass(frozen=True)
class PackageRef:
    """A package blob the app may deploy: an allow-listed container and a checked name."""

    container: ContainerRef
    blob: str  # as written in the tag (percent-encoding kept)

    @property
    def url(self) -> str:
        """The blob URL without any query: what records, logs and notifications name."""
        return f"{self.container.url}/{self.blob}"

    @property
    def blob_name(self) -> str:
        """The blob's name as Storage knows it (what the SDK takes and encodes again)."""
        return unquote(self.blob)


def parse_package(tag: str, allowed: tuple[ContainerRef, ...]) -> PackageRef:
    """The package the tag names, or PackageRefused naming the first rule it breaks."""
    if _CONTROL_OR_SPACE.search(tag):
        raise PackageRefused(PackageRule.CHARACTERS)
    if not tag.lower().startswith("https://"):
        raise PackageRefused(PackageRule.HTTPS)
    rest = tag[len("https://") :]
    authority, _, path = rest.partition("/")
    if "@" in authority:
        raise PackageRefused(PackageRule.USERINFO)
    if "?" in rest:
        raise PackageRefused(PackageRule.QUERY)
    if "#" in rest:
        raise PackageRefused(PackageRule.FRAGMENT)
    if _ENCODED_SEPARATOR.search(rest):
        raise PackageRefused(PackageRule.ENCODED)
    origin = authority.lower()
    for container in allowed:
        if origin != container.origin:
            continue
        if path == container.path or path == container.path + "/":
            raise PackageRefused(PackageRule.BLOB)
        if not path.startswith(container.path + "/"):
            continue
        blob = path[len(container.path) + 1 :]
        segments = blob.split("/") + unquote(blob).split("/")
        if any(segment in ("", ".", "..") for segment in segments):
            raise PackageRefused(PackageRule.SEGMENTS)
        return PackageRef(container, blob)
    raise PackageRefused(PackageRule.CONTAINER)


def parse_containers(text: str, storage_suffix: str) -> tuple[ContainerRef, ...]:
    """The ``PACKAGE_CONTAINERS`` setting: comma-separated container URLs, once each."""
    found: dict[str, ContainerRef] = {}
    for part in text.split(","):
        if part.strip():
            ref = ContainerRef.parse(part, storage_suffix)
            found.setdefault(ref.url, ref)
    return tuple(found.values())
