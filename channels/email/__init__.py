"""Email: an issue rendered once into a template, personalised per subscriber by string replacement.

- render.py: `render_email(document, mail_from=...)` gives an `EmailTemplate` (HTML with CSS inlined, a
  text part, under Gmail's clipping size); `EmailTemplate.personalize(to=..., unsubscribe_url=...)` the
  message for one subscriber.
- address.py: the one email-address check (subscribing and addressing a mail).
- mailer.py: sending over SMTP with aiosmtplib (one connection per sign-up mail, a pool for broadcasts).
  Imported by the sender only, so it is not re-exported here.
- channel.py: the `Channel`.

The package is named `email` inside `channels`; absolute imports keep `import email.message` meaning the
standard library.
"""

from channels.email.address import MAX_ADDRESS_CHARS, check_email_address, email_address_key
from channels.email.channel import EMAIL, EmailChannel
from channels.email.render import EMAIL_HTML_MAX_BYTES, EmailTemplate, render_email
from channels.email.settings import EmailSettings

__all__ = [
    "EMAIL",
    "EMAIL_HTML_MAX_BYTES",
    "MAX_ADDRESS_CHARS",
    "EmailChannel",
    "EmailSettings",
    "EmailTemplate",
    "check_email_address",
    "email_address_key",
    "render_email",
]
