"""What a domain name may be: parsing and normalising what people type."""

import ipaddress
import re
import unicodedata

import idna
from django.core.exceptions import ValidationError

LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# Scripts that may share a label: Japanese mixes Han, Hiragana and Katakana.
SCRIPT_FAMILIES = {"HIRAGANA": "CJK", "KATAKANA": "CJK", "CJK": "CJK", "HANGUL": "CJK"}


def _script(char):
    name = unicodedata.name(char, "")
    first = name.split(" ")[0]
    return SCRIPT_FAMILIES.get(first, first)


# Cyrillic and Greek letters that look like Latin ones. A label made only of
# them under a Latin top-level domain (аррӏе.com) poses as a Latin name.
LATIN_LOOKALIKES = set("аеорсухіјѕԁһӏԛԝԍѵүквнмтьαονρτυικ")


def _mixed_script(label):
    scripts = {_script(c) for c in label if c.isalpha()}
    return len(scripts) > 1


def _poses_as_latin(label, tld):
    letters = [c for c in label if c.isalpha()]
    return bool(letters) and tld.isascii() and all(c in LATIN_LOOKALIKES for c in letters)


def normalize_domain(value, *, allow_wildcard=False):
    """The ASCII (punycode) form of a host name, or a ValidationError saying what is wrong."""
    name = (value or "").strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValidationError("Enter a domain name, like www.example.org.", code="required")
    if "://" in name or "/" in name:
        raise ValidationError("Enter just the host name, without http:// or a path.", code="url")
    if ":" in name or name.startswith("["):
        try:
            ipaddress.ip_address(name.strip("[]"))
            raise ValidationError("IP addresses cannot be used; enter a domain name.", code="ip")
        except ValueError:
            raise ValidationError("Enter the name without a port; choose the port below.", code="port") from None
    if any(c.isspace() for c in name) or "@" in name or "\\" in name:
        raise ValidationError("A domain name cannot contain spaces or @.", code="invalid")
    try:
        ipaddress.ip_address(name)
        raise ValidationError("IP addresses cannot be used; enter a domain name.", code="ip")
    except ValueError:
        pass

    wildcard = name.startswith("*.")
    if wildcard:
        if not allow_wildcard:
            raise ValidationError("Wildcard names are for administrators only.", code="wildcard")
        name = name[2:]
    if "*" in name:
        raise ValidationError("A * may only stand alone as the first label (*.example.org).", code="wildcard")

    if len(name) > 253:
        raise ValidationError("A domain name can be at most 253 characters long.", code="too_long")
    labels = name.split(".")
    if any(not label for label in labels):
        raise ValidationError("A domain name cannot have empty parts (.. or a leading dot).", code="empty_label")
    if any(_mixed_script(label) or _poses_as_latin(label, labels[-1]) for label in labels):
        raise ValidationError("This name uses letters that look like others (a look-alike); use one alphabet.", code="lookalike")
    try:
        ascii_name = idna.encode(name, uts46=True, std3_rules=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as error:
        raise ValidationError(f"This is not a valid domain name ({error}).", code="idna") from None

    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise ValidationError("Enter a full name with at least two parts, like example.org.", code="too_short")
    for label in labels:
        if not LABEL.match(label):
            raise ValidationError(
                f"“{label[:70]}” is not allowed: parts are 1–63 letters, digits or hyphens, not starting or ending with a hyphen.",
                code="label",
            )
    if labels[-1].isdigit():
        raise ValidationError("The last part of a domain name cannot be a number.", code="numeric_tld")
    ascii_name = ("*." if wildcard else "") + ascii_name
    if len(ascii_name) > 253:
        raise ValidationError("A domain name can be at most 253 characters long.", code="too_long")
    return ascii_name


def display_domain(ascii_name):
    """The Unicode form for people; the ASCII form if it does not decode."""
    try:
        return idna.decode(ascii_name.removeprefix("*.")) if "xn--" in ascii_name else ascii_name
    except (idna.IDNAError, UnicodeError):
        return ascii_name
