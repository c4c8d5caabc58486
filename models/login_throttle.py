"""Sign-in throttling: exponential back-off per account (e-mail) and per client address.

The state lives in Redis, so that every web process sees the same counts, under keys that
expire: nothing is locked for good, and no table holds it. Each key pair is an attempt count
and a block whose time to live is the wait before the next attempt. An attempt is reserved
before the password is checked (one atomic script checks the blocks, counts, and sets the next
block), so parallel guesses cannot all slip through while the first ones are being verified.
The account's key is a digest of the e-mail as typed (normalized), whether a user has it or
not: an unknown e-mail is throttled exactly like a known one.

A success forgets the account's attempts, and gives the address its attempt back: only
failures count against an address, so an office behind one address is not throttled by its
own sign-ins. If Redis cannot be reached, sign-in is not throttled (fail open, logged): a Redis
outage must not lock everyone out.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
from dataclasses import dataclass

from redis.asyncio import Redis
from redis.exceptions import RedisError

from infra.settings import Settings
from models.errors import AuthenticationFailed, ErrorCode

log = logging.getLogger(__name__)

KEY_PREFIX = "invoicing:login:"
# A Redis that does not answer must not hold sign-in up for long: past this, fail open.
REDIS_TIMEOUT_SECONDS = 2.0

# KEYS: (count, block) per throttled dimension; ARGV: the window in ms, then per dimension
# (free attempts, base delay ms, cap ms). Answers the wait in ms (0 = admitted and counted).
_ADMIT = """
local wait = 0
for i = 1, #KEYS, 2 do
  local ttl = redis.call('PTTL', KEYS[i + 1])
  if ttl > wait then wait = ttl end
end
if wait > 0 then return wait end
local window = tonumber(ARGV[1])
for i = 1, #KEYS, 2 do
  local a = 2 + (i - 1) / 2 * 3
  local free, base, cap = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
  local n = redis.call('INCR', KEYS[i])
  local delay = 0
  if n >= free then
    delay = math.floor(math.min(base * 2 ^ math.min(n - free, 60), cap))
    redis.call('SET', KEYS[i + 1], '1', 'PX', delay)
  end
  redis.call('PEXPIRE', KEYS[i], window + delay)
end
return 0
"""

# KEYS: the account's count and block, then the address's count if there is one. The address's
# count goes down only while it exists (a count without an expiry would never go).
_SUCCEEDED = """
redis.call('DEL', KEYS[1], KEYS[2])
if #KEYS > 2 and redis.call('EXISTS', KEYS[3]) == 1 then
  if redis.call('DECR', KEYS[3]) <= 0 then redis.call('DEL', KEYS[3]) end
end
return 0
"""


class LoginThrottled(AuthenticationFailed):
    """Too many sign-in attempts on the e-mail or from the address: wait, then try again."""

    code = ErrorCode.LOGIN_THROTTLED

    def __init__(self, retry_after_seconds: int):
        super().__init__(
            f"Too many sign-in attempts. Try again in {retry_after_seconds} "
            f"second{'' if retry_after_seconds == 1 else 's'}."
        )
        self.retry_after_seconds = retry_after_seconds


@dataclass(frozen=True)
class _Dimension:
    """One thing attempts are counted against: its two keys and its allowance."""

    count: str
    block: str
    free: int


def _account_key(email: str) -> str:
    # A digest: the e-mail stays out of Redis, and any input makes a bounded key.
    digest = hashlib.sha256(email.strip().lower().encode("utf-8", "surrogatepass")).hexdigest()
    return f"{KEY_PREFIX}account:{digest}"


def _dimension(key: str, free: int) -> _Dimension:
    return _Dimension(count=f"{key}:count", block=f"{key}:block", free=free)


class LoginThrottle:
    """The sign-in throttle for requests from `address` (None when unknown: then only the
    account is throttled)."""

    def __init__(self, redis: Redis, settings: Settings, address: str | None = None):
        self.redis = redis
        self.settings = settings
        self.address = address

    def _dimensions(self, email: str) -> tuple[_Dimension, _Dimension | None]:
        account = _dimension(_account_key(email), self.settings.login_free_attempts_per_account)
        address = (
            _dimension(f"{KEY_PREFIX}address:{self.address}", self.settings.login_free_attempts_per_address)
            if self.address else None
        )
        return account, address

    async def admit(self, email: str) -> None:
        """Count an attempt on `email`, or raise `LoginThrottled` while it must wait."""
        settings = self.settings
        dimensions = [d for d in self._dimensions(email) if d]
        keys = [key for d in dimensions for key in (d.count, d.block)]
        limits = [
            value for d in dimensions
            for value in (d.free, _ms(settings.login_backoff_base_seconds), _ms(settings.login_backoff_max_seconds))
        ]
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                admit = self.redis.register_script(_ADMIT)
                wait_ms = int(await admit(keys, [_ms(settings.login_attempt_window_seconds), *limits]))
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("login throttle unavailable, not throttling %.200r from %s: %r", email, self.address, exc)
            return
        if wait_ms > 0:
            retry_after = max(1, math.ceil(wait_ms / 1000))
            log.warning("login throttled for %.200r from %s: retry after %d s", email, self.address, retry_after)
            raise LoginThrottled(retry_after)

    async def succeeded(self, email: str) -> None:
        """Forget the account's attempts; the address gets this attempt back."""
        account, address = self._dimensions(email)
        keys = [account.count, account.block, *([address.count] if address else [])]
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                await self.redis.register_script(_SUCCEEDED)(keys)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("login throttle unavailable, could not reset %.200r: %r", email, exc)

    async def clear(self, email: str) -> None:
        """Forget the account's attempts and any wait: an owner unlocked it. Errors are
        raised: an unlock that did not happen must not look as if it had."""
        account, _ = self._dimensions(email)
        async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
            await self.redis.delete(account.count, account.block)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
