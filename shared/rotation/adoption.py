"""Adopting a cloud service: tag it so rotation manages it.

Azure never returns a service's ``packageUrl``, so rotation needs the operator to say
where the deployed ``.cspkg`` is (``cert-rotation-package``) and, so a changed blob is
noticed, its Content-MD5 (``cert-rotation-package-md5``). Adopting checks the URL by the
same strict rules rotation applies (:mod:`shared.domain.packages`: an allow-listed container, no
query, so no SAS ever lands in a tag) and that the blob exists, then sets both tags in one
PATCH that keeps every other tag and touches nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.domain.compute_ids import split_service_id
from shared.domain.model import PACKAGE_MD5_TAG, PACKAGE_TAG
from shared.domain.packages import ContainerRef, parse_package
from shared.rotation.ports import Packages, TagWriter


@dataclass(frozen=True)
class Adoption:
    service_id: str
    package_url: str
    md5: str | None  # None: Storage keeps no Content-MD5 for the blob (the tag is removed)


def adopt(
    compute: TagWriter,
    packages: Packages,
    containers: tuple[ContainerRef, ...],
    service_id: str,
    package_url: str,
) -> Adoption:
    """Tag ``service_id`` with its package, which must be in one of ``containers``
    (``PACKAGE_CONTAINERS``). Raises InvalidInput (bad id), PackageRefused (the URL breaks
    a rule), PreconditionFailed (no such blob), NotFound, TransientError, PlatformRejected.
    """
    split_service_id(service_id)
    package = parse_package(package_url, containers)
    md5 = packages.package_facts(package).md5
    service = compute.get(service_id)
    tags = {k: v for k, v in service.tags.items() if k != PACKAGE_MD5_TAG}
    tags[PACKAGE_TAG] = package.url
    if md5:
        tags[PACKAGE_MD5_TAG] = md5
    compute.set_tags(service.id, tags)
    return Adoption(service.id, package.url, md5)
