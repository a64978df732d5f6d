"""WeChat's REST API over aiohttp: the access token, customer-service messages, mass sends and their
previews (an editor's test send).

wechatpy 1.8 has no async client (docs/channels.md, "wechatpy"), so the calls are made here. The token
comes from /cgi-bin/stable_token, which, unlike /cgi-bin/token, does not invalidate the token other
processes hold. Error codes (docs/channels.md, "Customer-service messages": 客服消息 and 全局返回码) become
the small exception hierarchy below, so callers can tell "this user cannot be messaged now" from "our
credentials are wrong" from "WeChat is unreachable".
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from channels.base import PushResult, PushStatus
from content.errors import JianbaoError

log = logging.getLogger(__name__)

# The token lives 7200 s (docs/channels.md, "access_token";
# https://developers.weixin.qq.com/doc/subscription/api/base/api_getstableaccesstoken.html); take a new one
# this long before it runs out.
TOKEN_MARGIN_SECONDS = 300
REQUEST_TIMEOUT_SECONDS = 10.0
# 预览接口: a mass-send message (here a draft's mpnews) sent to one follower only, for an editor to check it
# on their phone; it uses no mass-send quota and reaches no one else. Answer on success:
# {"errcode": 0, "errmsg": "preview success", "msg_id": 34182}. Official:
# https://developers.weixin.qq.com/doc/offiaccount/Message_Management/Batch_Sends_and_Originality_Checks.html
# (wechatpy's client/api/message.py, _send_mass_message(preview=True), posts the same body).
MASS_PREVIEW = "/cgi-bin/message/mass/preview"


class WeChatApiError(JianbaoError):
    status = 502
    kind = "wechat_api"

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"WeChat API error {code}: {message}")
        self.code = code


class WeChatUnreachable(WeChatApiError):
    """No usable answer (network error, timeout, not JSON): the call may be retried later."""

    status = 503


class WeChatTimeout(WeChatUnreachable):
    """The request went out but no answer came in time: WeChat may have acted on it ("maybe delivered")."""


class CredentialError(WeChatApiError):
    """AppID, secret or access token refused (40001/40014/42001 even after a new token, 40013, 40125...)."""


class RecipientError(WeChatApiError):
    """This user cannot be sent this message now; other users can."""


class OutsideWindow(RecipientError):
    """45015: the user has not written within 48 hours (or has unfollowed)."""


class OutOfCount(RecipientError):
    """45047: the messages a user's last message allows have been used."""


class NotFollowing(RecipientError):
    """43004: the user does not follow the account."""


class BadOpenid(RecipientError):
    """40003: not an openid of this account."""


class MessageTooLong(WeChatApiError):
    """45002: the text is over the length limit (about 2048 bytes)."""


class RateLimited(WeChatApiError):
    """45009/45011: too many calls; try later."""


class AlreadySent(WeChatApiError):
    """45065: a mass send with this clientmsgid was already made."""


class QuotaExhausted(WeChatApiError):
    """45028: no mass send left in this period."""


# 全局返回码 -1 "系统繁忙，此时请开发者稍候再试": try again later. Official (linked from docs/channels.md):
# https://developers.weixin.qq.com/doc/offiaccount/Getting_Started/Global_Return_Code.html
SYSTEM_BUSY = -1
TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid, malformed, expired: fetch a new token
ERRORS: dict[int, type[WeChatApiError]] = {
    40001: CredentialError,
    40014: CredentialError,
    42001: CredentialError,
    40013: CredentialError,  # invalid AppID
    40125: CredentialError,  # invalid AppSecret
    40164: CredentialError,  # caller's IP not in the account's allow list
    48001: CredentialError,  # the account is not authorised for this API
    45015: OutsideWindow,
    45047: OutOfCount,
    43004: NotFollowing,
    40003: BadOpenid,
    45002: MessageTooLong,
    45009: RateLimited,
    45011: RateLimited,
    45065: AlreadySent,
    45028: QuotaExhausted,
}


def seconds_to_next_quota(now: dt.datetime | None = None) -> float:
    """Until the next midnight in Beijing, when a subscription account's daily mass send is back."""
    beijing = dt.timezone(dt.timedelta(hours=8))
    local = (now or dt.datetime.now(dt.UTC)).astimezone(beijing)
    midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(), beijing)
    return (midnight - local).total_seconds() + 60  # a minute late rather than early


def api_error(code: int, message: str) -> WeChatApiError:
    return ERRORS.get(code, WeChatApiError)(code, message)


class WeChatApi:
    """One account's API client on a session the caller owns (and closes)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        appid: str,
        secret: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._base_url = base_url.rstrip("/")
        self._appid = appid
        self._secret = secret
        self._clock = clock
        self.timeout = REQUEST_TIMEOUT_SECONDS
        self._token = ""
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    async def send_text(self, openid: str, text: str) -> None:
        """A customer-service text message (it may contain <a href> links)."""
        payload = {"touser": openid, "msgtype": "text", "text": {"content": text}}
        await self.call("/cgi-bin/message/custom/send", payload)

    async def push_text(self, openid: str, text: str) -> PushResult:
        """A customer-service text for a broadcast, its outcome read as a broadcast needs it."""
        try:
            await self.send_text(openid, text)
        except WeChatTimeout as error:
            return PushResult(PushStatus.UNCERTAIN, error=error.message)
        except (OutsideWindow, OutOfCount, NotFollowing) as error:
            return PushResult(PushStatus.SKIPPED, error=error.message)
        except BadOpenid as error:
            return PushResult(PushStatus.BLOCKED, error=error.message)
        except MessageTooLong as error:
            return PushResult(PushStatus.FAILED, error=error.message)
        except (RateLimited, WeChatUnreachable) as error:
            return PushResult(PushStatus.RETRY, error=error.message)
        except CredentialError:
            raise
        except WeChatApiError as error:
            return PushResult(PushStatus.RETRY, error=error.message)
        return PushResult(PushStatus.SENT)

    async def add_draft(self, article: dict[str, str]) -> str:
        """draft/add with one article (thumb_media_id included); its media_id."""
        answer = await self.call("/cgi-bin/draft/add", {"articles": [article]})
        media_id = answer.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise WeChatUnreachable(-1, "/cgi-bin/draft/add answered without media_id")
        return media_id

    async def mass_send(self, media_id: str, clientmsgid: str) -> PushResult:
        """The mass send of a draft to every follower. `clientmsgid` makes a resend harmless: WeChat
        answers 45065 for one it has seen, which means the earlier attempt went out."""
        payload = {
            "filter": {"is_to_all": True},
            "mpnews": {"media_id": media_id},
            "msgtype": "mpnews",
            "send_ignore_reprint": 0,
            "clientmsgid": clientmsgid,
        }
        try:
            answer = await self.call("/cgi-bin/message/mass/sendall", payload)
        except AlreadySent:
            return PushResult(PushStatus.SENT, error="45065: already sent with this clientmsgid")
        except QuotaExhausted as error:
            return PushResult(PushStatus.RETRY, error=error.message, retry_after=seconds_to_next_quota())
        except (RateLimited, WeChatUnreachable) as error:
            # A timeout too: the retry carries the same clientmsgid, so it cannot send twice.
            return PushResult(PushStatus.RETRY, error=error.message)
        return PushResult(PushStatus.SENT, message_id=str(answer.get("msg_id", "")) or None)

    async def mass_preview(self, media_id: str, openid: str) -> PushResult:
        """A draft sent as a mass-send preview to one follower (an editor's test send). CredentialError is
        raised: the channel cannot send anything, not just this preview."""
        payload = {"touser": openid, "mpnews": {"media_id": media_id}, "msgtype": "mpnews"}
        try:
            answer = await self.call(MASS_PREVIEW, payload)
        except WeChatTimeout as error:
            return PushResult(PushStatus.UNCERTAIN, error=error.message)
        except BadOpenid as error:
            reason = f"not the openid of a follower of this account: {error.message}"
            return PushResult(PushStatus.BLOCKED, error=reason)
        except NotFollowing as error:
            reason = f"this user does not follow the account: {error.message}"
            return PushResult(PushStatus.BLOCKED, error=reason)
        except (RateLimited, WeChatUnreachable) as error:
            return PushResult(PushStatus.RETRY, error=error.message)
        except CredentialError:
            raise
        except WeChatApiError as error:
            status = PushStatus.RETRY if error.code == SYSTEM_BUSY else PushStatus.FAILED
            return PushResult(status, error=error.message)
        return PushResult(PushStatus.SENT, message_id=str(answer.get("msg_id", "")) or None)

    async def call(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        """POST `payload` as JSON to `path` with the token; on a token error, a new token and one retry."""
        token = await self.access_token()
        try:
            return await self._post(path, payload, token=token)
        except CredentialError as error:
            if error.code not in TOKEN_ERRORS:
                raise
            log.info("WeChat refused the access token (%d); fetching a new one", error.code)
            token = await self._renew(rejected=token)
            return await self._post(path, payload, token=token)

    async def access_token(self) -> str:
        async with self._token_lock:
            if not self._token or self._clock() >= self._token_expires:
                await self._fetch_token(force_refresh=False)
            return self._token

    async def _renew(self, *, rejected: str) -> str:
        async with self._token_lock:
            if self._token and self._token != rejected and self._clock() < self._token_expires:
                return self._token  # another call renewed it meanwhile
            await self._fetch_token(force_refresh=False)
            if self._token == rejected:
                # stable_token keeps handing out a token until it expires; force_refresh (limited to a few
                # a day) is for a token that was invalidated before that.
                await self._fetch_token(force_refresh=True)
            return self._token

    async def _fetch_token(self, *, force_refresh: bool) -> None:
        payload = {
            "grant_type": "client_credential",
            "appid": self._appid,
            "secret": self._secret,
            "force_refresh": force_refresh,
        }
        answer = await self._post("/cgi-bin/stable_token", payload, token=None)
        token, lifetime = answer.get("access_token"), answer.get("expires_in")
        if not isinstance(token, str) or not token or not isinstance(lifetime, int):
            raise WeChatUnreachable(-1, "stable_token answered without access_token/expires_in")
        self._token = token
        self._token_expires = self._clock() + max(lifetime - TOKEN_MARGIN_SECONDS, lifetime / 2)

    async def _post(self, path: str, payload: dict[str, Any], *, token: str | None) -> dict[str, Any]:
        params = {"access_token": token} if token is not None else None
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with self._session.post(
                self._base_url + path, json=payload, params=params, timeout=timeout
            ) as response:
                answer = await response.json(content_type=None)
        except aiohttp.ConnectionTimeoutError:  # never connected: nothing was sent
            raise WeChatUnreachable(-1, f"{path}: connection timeout") from None
        except TimeoutError:
            raise WeChatTimeout(-1, f"{path}: no answer within {self.timeout:g} s") from None
        except (aiohttp.ClientError, ValueError) as error:
            # Never the error's text: aiohttp puts the URL, access token included, into it.
            raise WeChatUnreachable(-1, f"{path}: {type(error).__name__}") from None
        if not isinstance(answer, dict):
            raise WeChatUnreachable(-1, f"{path}: the answer is not a JSON object")
        code = answer.get("errcode", 0)
        if not isinstance(code, int):
            raise WeChatUnreachable(-1, f"{path}: errcode is not a number")
        if code != 0:
            raise api_error(code, f"{path}: {str(answer.get('errmsg', ''))[:200]}")
        return answer
