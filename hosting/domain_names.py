"""What a domain name may be: parsing and normalising what people type.

Every message about a name is in ERRORS, under the code it is raised with.
"""

import ipaddress
import re
import unicodedata

import idna

from controlpanel.errors import refusal

ERRORS = {
    "required": "Enter a domain name, like www.example.org.",
    "url": "Enter just the host name, without http:// or a path.",
    "ip": "IP addresses cannot be used; enter a domain name.",
    "port": "Enter the name without a port; choose the port below.",
    "invalid": "A domain name cannot contain spaces or @.",
    "wildcard": "Wildcard names are for administrators only.",
    "wildcard_position": "A * may only stand alone as the first label (*.example.org).",
    "too_long": "A domain name can be at most 253 characters long.",
    "empty_label": "A domain name cannot have empty parts (.. or a leading dot).",
    "lookalike": "This name uses letters that look like others (a look-alike); use one alphabet.",
    "idna": "This is not a valid domain name ({reason}).",
    "too_short": "Enter a full name with at least two parts, like example.org.",
    "label": "“{label}” is not allowed: parts are 1–63 letters, digits or hyphens, not starting or ending with a hyphen.",
    "numeric_tld": "The last part of a domain name cannot be a number.",
    "in_use": "This domain is already in use.",
}


def _error(code, **params):
    return refusal(ERRORS, code, **params)


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
        raise _error("required")
    if "://" in name or "/" in name:
        raise _error("url")
    if ":" in name or name.startswith("["):
        try:
            ipaddress.ip_address(name.strip("[]"))
            raise _error("ip")
        except ValueError:
            raise _error("port") from None
    if any(c.isspace() for c in name) or "@" in name or "\\" in name:
        raise _error("invalid")
    try:
        ipaddress.ip_address(name)
        raise _error("ip")
    except ValueError:
        pass

    wildcard = name.startswith("*.")
    if wildcard:
        if not allow_wildcard:
            raise _error("wildcard")
        name = name[2:]
    if "*" in name:
        raise _error("wildcard_position")

    if len(name) > 253:
        raise _error("too_long")
    labels = name.split(".")
    if any(not label for label in labels):
        raise _error("empty_label")
    try:
        ascii_name = idna.encode(name, uts46=True, std3_rules=True, transitional=False).decode("ascii")
        # Look-alikes are judged on the letters a reader sees, however the name was typed (punycode too).
        shown = idna.decode(ascii_name).split(".")
    except (idna.IDNAError, UnicodeError) as error:
        raise _error("idna", reason=error) from None
    if any(_mixed_script(label) or _poses_as_latin(label, shown[-1]) for label in shown):
        raise _error("lookalike")

    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise _error("too_short")
    for label in labels:
        if not LABEL.match(label):
            raise _error("label", label=label[:70])
    if labels[-1].isdigit():
        raise _error("numeric_tld")
    ascii_name = ("*." if wildcard else "") + ascii_name
    if len(ascii_name) > 253:
        raise _error("too_long")
    return ascii_name


def display_domain(ascii_name):
    """The Unicode form for people; the ASCII form if it does not decode."""
    try:
        return idna.decode(ascii_name.removeprefix("*.")) if "xn--" in ascii_name else ascii_name
    except (idna.IDNAError, UnicodeError):
        return ascii_name
