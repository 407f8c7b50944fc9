"""Credentials out of URLs before they become text: messages, artifacts, transcripts.

A server URL may carry a password (`http://user:pass@host/...`) or a token in its query
(`?token=`, `?api_key=`, a signed URL's `sig`). Every place that turns such a URL into
text calls `redact_url`; text we did not build ourselves (an exception's message, which
may quote the URL it failed on) goes through `redact_text`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "REDACTED"  # plain word: stays visible in Markdown and terminal markup, unlike "***"

# Query or fragment parameter names whose value is a credential (compared lower-case,
# with '-' read as '_'). A name ending in one of _SUFFIXES counts too (x_amz_signature,
# client_secret, refresh_token).
_NAMES = frozenset({
    "token", "access_token", "id_token", "refresh_token", "auth", "auth_token", "authorization",
    "api_key", "apikey", "key", "x_api_key", "secret", "client_secret", "password", "passwd", "pass", "pwd",
    "sig", "signature", "code", "credential", "credentials", "session", "session_id", "sessionid", "jwt",
})
_SUFFIXES = ("_token", "_key", "_secret", "_signature", "_sig", "_password", "_credential")
# A URL inside free text: a scheme, then anything up to whitespace or a closing quote/bracket.
_URL_IN_TEXT = re.compile(r"""\b[A-Za-z][A-Za-z0-9+.-]{1,15}://[^\s'"<>`)\]]+""")


def is_credential_name(name: str) -> bool:
    n = name.strip().lower().replace("-", "_")
    return n in _NAMES or n.endswith(_SUFFIXES)


def _mask_params(part: str) -> str:
    """`a=1&token=x` -> `a=1&token=REDACTED`; the order and the other values stay as they were."""
    if not part:
        return part
    out = []
    for pair in re.split(r"([&;])", part):
        name, eq, value = pair.partition("=")
        out.append(f"{name}={MASK}" if eq and value and is_credential_name(name) else pair)
    return "".join(out)


def redact_url(url: str | None) -> str:
    """The URL without its userinfo and with credential-like query values masked.

    Something that is not a URL comes back unchanged, since there is nothing to strip.
    """
    if not url:
        return url or ""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]  # userinfo (user:password@) dropped
    except ValueError:  # e.g. an invalid IPv6 literal: still strip what looks like userinfo
        return re.sub(r"//[^/@\s]*@", "//", url)
    return urlunsplit((parts.scheme, host, parts.path, _mask_params(parts.query), _mask_params(parts.fragment)))


def redact_text(text: str | None) -> str:
    """`text` with every URL in it redacted (see `redact_url`)."""
    if not text:
        return text or ""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
