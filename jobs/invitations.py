"""The invitation job: e-mail a new user the one-time link that lets it choose a password."""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo

from arq import Retry

from jobs.effects import runs_effects
from jobs.mailer import (
    MailPermanentError,
    MailTransientError,
    organization_sender,
    render_invitation_email,
    send_mail,
)
from models.auth import User
from models.people import invitation_sent, make_invitation_link

log = logging.getLogger(__name__)
MAX_TRIES = 5


@runs_effects
async def send_invitation(ctx: dict, invitation_id: str) -> str:
    """Make the invitation's token and e-mail its link; nothing when it is no longer pending
    (accepted, withdrawn by a resend or a deactivation, expired)."""
    link = await make_invitation_link(invitation_id)
    if link is None:
        return "not pending"
    settings = ctx["settings"]
    organization = link.user.organization
    inviter = await User.get_or_none(id=link.invitation.invited_by_id) if link.invitation.invited_by_id else None
    expires = link.invitation.expires_at.astimezone(ZoneInfo(organization.timezone))
    subject, text = render_invitation_email({
        "organization_name": organization.name, "name": link.user.name, "email": link.user.email,
        "inviter": (inviter.name or inviter.email) if inviter else organization.name,
        "link": f"{settings.invitation_url}#token={link.token}",
        "expires_at": f"{expires:%Y-%m-%d %H:%M} ({organization.timezone})",
    })
    try:
        outcomes = await send_mail(
            settings, to=[link.user.email], subject=subject, text=text, **organization_sender(organization)
        )
    except MailTransientError as exc:
        if ctx.get("job_try", 1) < MAX_TRIES:
            raise Retry(defer=30 * ctx.get("job_try", 1)) from exc
        log.error("invitation %s not sent: %s", invitation_id, exc)
        return "failed"
    except MailPermanentError as exc:
        log.error("invitation %s not sent: %s", invitation_id, exc)
        return "failed"
    if not all(outcome.delivered for outcome in outcomes):
        log.error("invitation %s refused: %s", invitation_id, outcomes[0].detail)
        return "failed"
    await invitation_sent(invitation_id)
    return "sent"
