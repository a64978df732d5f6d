"""An email subscriber's address: the one check, used when someone subscribes and when a mail is addressed.

email-validator checks the syntax (RFC 5321/5322 as mail servers apply them: dot-atoms, label lengths,
no quoting, no IP literals, no special-use domains such as localhost). No DNS lookup: signing up must not
depend on a resolver, and a dead domain shows up as a bounce anyway. Pure, no network.
"""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from content.errors import BadInput

# RFC 5321 4.5.3.1.3: a path is at most 256 octets including its angle brackets -> 254 for the address.
MAX_ADDRESS_CHARS = 254


def check_email_address(address: str) -> str:
    """The address as typed (spaces around it dropped), or BadInput with one line naming what is wrong.

    ASCII only: an internationalised address needs SMTPUTF8 at every server along the way, which we cannot
    promise; and email-validator would accept a Unicode domain (sent as IDNA) that we would store unchanged.
    """
    address = address.strip(" ")
    if len(address) > MAX_ADDRESS_CHARS:
        raise BadInput(f"an email address has at most {MAX_ADDRESS_CHARS} characters")
    if not address.isascii():
        raise BadInput("not a valid email address: ASCII only, like name@example.com")
    try:
        # strict: the local part's 64-octet limit (RFC 5321 4.5.3.1.1) too.
        validate_email(address, check_deliverability=False, allow_smtputf8=False, strict=True)
    except EmailNotValidError as error:
        reason = " ".join(str(error).split())  # it names characters (U+000A) rather than show them
        raise BadInput(f"not a valid email address: {reason[:1].lower()}{reason[1:]}") from None
    return address


def email_address_key(address: str) -> str:
    """What makes two spellings one subscriber: mailbox providers treat addresses case-insensitively."""
    return address.lower()
