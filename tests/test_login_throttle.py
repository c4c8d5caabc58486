"""Sign-in throttling: back-off per e-mail and per client address, kept in Redis."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import timedelta

import httpx
import pytest
from redis.asyncio import Redis
from strawberry.relay import to_base64

from models import auth
from models.base import Scope
from models.errors import AuthenticationFailed
from models.login_throttle import KEY_PREFIX, LoginThrottle, LoginThrottled
from tests import factories as f
from tests.conftest import free_port
from tests.graphql import error_codes, gql

LOGIN = """mutation($e: String!, $p: String!) { login(email: $e, password: $p) {
  __typename ... on LoginSuccess { token } ... on UserError { code message } } }"""
UNLOCK = """mutation($id: ID!) { unlockLogin(userId: $id) {
  __typename ... on LoginUnlocked { user { email } } ... on UserError { code field } } }"""
WRONG = "not the password"
EMAIL = "owner@example.com"


@pytest.fixture
def limits(settings, monkeypatch):
    """Sets the throttle's settings for one test (the app reads the same settings object)."""

    def apply(*, account=3, address=100, base=60.0, cap=600.0, window=900.0):
        monkeypatch.setattr(settings, "login_free_attempts_per_account", account)
        monkeypatch.setattr(settings, "login_free_attempts_per_address", address)
        monkeypatch.setattr(settings, "login_backoff_base_seconds", base)
        monkeypatch.setattr(settings, "login_backoff_max_seconds", cap)
        monkeypatch.setattr(settings, "login_attempt_window_seconds", window)

    return apply


async def _login(client, email: str, password: str) -> dict:
    return (await gql(client, LOGIN, {"e": email, "p": password}))["data"]["login"]


def _outcome(answer: dict) -> str:
    return answer.get("code", answer["__typename"])


@pytest.fixture
async def owner():
    return await f.user(await f.organization(), email=EMAIL, password=f.PASSWORD)


async def test_the_right_password_waits_out_the_back_off_after_wrong_ones(client, owner, limits):
    limits(account=3, base=1, cap=4)
    for _ in range(3):
        assert _outcome(await _login(client, EMAIL, WRONG)) == "UNAUTHENTICATED"
    throttled = await _login(client, EMAIL, f.PASSWORD)
    assert throttled == {
        "__typename": "AuthenticationError", "code": "LOGIN_THROTTLED",
        "message": "Too many sign-in attempts. Try again in 1 second.",
    }
    await asyncio.sleep(1.05)
    assert _outcome(await _login(client, EMAIL, f.PASSWORD)) == "LoginSuccess"


async def test_an_unknown_email_is_throttled_with_the_same_answer(client, owner, limits):
    limits(account=3, base=30)
    answers = {}
    for email in (EMAIL, "nobody@example.com"):
        for _ in range(3):
            assert await _login(client, email, WRONG) == {
                "__typename": "AuthenticationError", "code": "UNAUTHENTICATED",
                "message": "The e-mail or the password is wrong.",
            }
        answers[email] = await _login(client, email, WRONG)
    assert answers[EMAIL] == answers["nobody@example.com"] == {
        "__typename": "AuthenticationError", "code": "LOGIN_THROTTLED",
        "message": "Too many sign-in attempts. Try again in 30 seconds.",
    }


async def test_an_address_is_throttled_across_emails_and_another_address_is_not(app, client, owner, limits):
    limits(account=100, address=3, base=30)
    for n in range(3):
        assert _outcome(await _login(client, f"guess{n}@example.com", WRONG)) == "UNAUTHENTICATED"
    # A fourth e-mail, with its right password: the address must wait.
    assert _outcome(await _login(client, EMAIL, f.PASSWORD)) == "LOGIN_THROTTLED"
    elsewhere = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with httpx.AsyncClient(transport=elsewhere, base_url="http://testserver") as other:
        assert _outcome(await _login(other, EMAIL, f.PASSWORD)) == "LoginSuccess"


async def test_successful_sign_ins_do_not_count_against_an_address(client, owner, limits):
    limits(account=100, address=3, base=30)
    for _ in range(10):
        assert _outcome(await _login(client, EMAIL, f.PASSWORD)) == "LoginSuccess"
    for n in range(2):
        assert _outcome(await _login(client, f"guess{n}@example.com", WRONG)) == "UNAUTHENTICATED"
    assert _outcome(await _login(client, EMAIL, f.PASSWORD)) == "LoginSuccess"


async def test_the_wait_doubles_with_each_attempt_up_to_the_cap(redis, settings, owner, limits):
    limits(account=2, base=1, cap=4)
    throttle = LoginThrottle(redis, settings, "198.51.100.7")
    waits = []
    for _ in range(10):
        try:
            await auth.login(EMAIL, WRONG, timedelta(hours=1), throttle=throttle)
        except LoginThrottled as exc:
            waits.append(exc.retry_after_seconds)
            # As if the wait had passed.
            await redis.delete(*await redis.keys(f"{KEY_PREFIX}account:*:block"))
        except AuthenticationFailed:
            continue
    assert waits == [1, 2, 4, 4]


async def test_a_successful_sign_in_forgets_the_accounts_attempts(client, redis, owner, limits):
    limits(account=3, base=30)
    for _ in range(2):
        assert _outcome(await _login(client, EMAIL, WRONG)) == "UNAUTHENTICATED"
    assert _outcome(await _login(client, EMAIL, f.PASSWORD)) == "LoginSuccess"
    assert await redis.keys(f"{KEY_PREFIX}account:*") == []
    for _ in range(2):
        assert _outcome(await _login(client, EMAIL, WRONG)) == "UNAUTHENTICATED"
    assert _outcome(await _login(client, EMAIL, f.PASSWORD)) == "LoginSuccess"


async def test_parallel_guesses_do_not_slip_past_the_throttle(client, owner, limits):
    limits(account=3, base=30)
    answers = await asyncio.gather(*(_login(client, EMAIL, WRONG) for _ in range(20)))
    outcomes = sorted(_outcome(a) for a in answers)
    assert outcomes == ["LOGIN_THROTTLED"] * 17 + ["UNAUTHENTICATED"] * 3


async def test_the_state_expires_in_redis(client, redis, owner, limits):
    limits(account=1, address=1, base=5, cap=10, window=60)
    await _login(client, EMAIL, WRONG)
    keys = await redis.keys(f"{KEY_PREFIX}*")
    assert len(keys) == 4
    for key in keys:
        assert 0 < await redis.pttl(key) <= 65_000


async def test_an_unknown_email_is_verified_like_a_known_one_and_a_throttled_attempt_not_at_all(
    redis, settings, owner, limits, monkeypatch
):
    """Same work, so about the same time: an argon2 verification for a wrong password, an
    unknown e-mail, and a user without a password; none while throttled, known or not."""
    limits(account=1, base=30)
    passwordless = await f.user(await f.organization(), email="tokens-only@example.com")
    verified: list[str] = []
    hasher = auth._hasher

    class Spy:
        def verify(self, stored, password):
            verified.append(stored)
            return hasher.verify(stored, password)

        def __getattr__(self, name):
            return getattr(hasher, name)

    monkeypatch.setattr(auth, "_hasher", Spy())
    throttle = LoginThrottle(redis, settings)
    for email in (EMAIL, "nobody@example.com", passwordless.email):
        with pytest.raises(AuthenticationFailed) as caught:
            await auth.login(email, WRONG, timedelta(hours=1), throttle=throttle)
        assert type(caught.value) is AuthenticationFailed
    assert len(verified) == 3
    for email in (EMAIL, "nobody@example.com"):
        with pytest.raises(LoginThrottled):
            await auth.login(email, f.PASSWORD, timedelta(hours=1), throttle=throttle)
    assert len(verified) == 3


async def test_an_owner_unlocks_a_user_of_the_organization(client, world, limits):
    limits(account=2, base=300)
    email = "viewer2@example.com"
    user = await f.user(world.org, Scope.VIEWER, email=email, password=f.PASSWORD)
    for _ in range(2):
        await _login(client, email, WRONG)
    assert _outcome(await _login(client, email, f.PASSWORD)) == "LOGIN_THROTTLED"
    unlocked = await gql(client, UNLOCK, {"id": to_base64("User", user.id)}, token=world.tokens["owner"])
    assert unlocked["data"]["unlockLogin"] == {"__typename": "LoginUnlocked", "user": {"email": email}}
    assert _outcome(await _login(client, email, f.PASSWORD)) == "LoginSuccess"


@pytest.mark.parametrize("role", ["viewer", "customer"])
async def test_only_owners_unlock(client, world, role):
    result = await gql(
        client, UNLOCK, {"id": to_base64("User", world.users["viewer"].id)}, token=world.tokens[role]
    )
    assert error_codes(result) == ["FORBIDDEN"]
    assert result["data"] is None


@pytest.mark.parametrize("target", ["foreign", "malformed"])
async def test_an_owner_cannot_unlock_a_user_it_cannot_see(client, world, target):
    user_id = to_base64("User", world.users["foreign_owner"].id) if target == "foreign" else "nonsense"
    result = await gql(client, UNLOCK, {"id": user_id}, token=world.tokens["owner"])
    assert result["data"]["unlockLogin"] == {"__typename": "NotFoundError", "code": "NOT_FOUND", "field": "userId"}


async def test_failures_throttles_and_unlocks_are_logged_without_the_password(client, world, limits, caplog):
    limits(account=1, base=30)
    email = "viewer2@example.com"
    user = await f.user(world.org, Scope.VIEWER, email=email, password=f.PASSWORD)
    with caplog.at_level(logging.WARNING, logger="models"):
        await _login(client, email, WRONG)
        await _login(client, email, WRONG)
        await gql(client, UNLOCK, {"id": to_base64("User", user.id)}, token=world.tokens["owner"])
    messages = [record.getMessage() for record in caplog.records if record.name.startswith("models")]
    # The wait left is counted from the first failure: a busy machine may take a second or more
    # between the two attempts.
    waited = re.fullmatch(rf"login throttled for '{re.escape(email)}' from 127\.0\.0\.1: retry after (\d+) s", messages[1])
    assert waited and 20 <= int(waited.group(1)) <= 30, messages[1]
    assert [messages[0], messages[2:]] == [
        f"login failed for '{email}' from 127.0.0.1",
        [f"login unlocked for '{email}' by {world.users['owner'].email}"],
    ]
    assert not any(WRONG in m or f.PASSWORD in m for m in messages)


async def test_sign_in_works_while_redis_is_unreachable(app, client, owner, limits, caplog):
    limits(account=1, base=30)
    app.state.redis = Redis(host="127.0.0.1", port=free_port())
    try:
        with caplog.at_level(logging.WARNING, logger="models"):
            for _ in range(3):
                assert _outcome(await _login(client, EMAIL, WRONG)) == "UNAUTHENTICATED"
            assert _outcome(await _login(client, EMAIL, f.PASSWORD)) == "LoginSuccess"
    finally:
        await app.state.redis.aclose()
    assert any(record.getMessage().startswith("login throttle unavailable") for record in caplog.records)
