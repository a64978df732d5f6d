"""Feishu's limits for each custom bot, for the shared per-robot pacer (channels/pacing.py).

自定义机器人使用指南 ("注意事项"):
"自定义机器人的频率控制和普通应用不同，为单租户单机器人 100 次/分钟，5 次/秒" (per tenant and per bot,
100 a minute and 5 a second). The limits are per bot: one slow group never holds the others back.
"""

from __future__ import annotations

from channels.pacing import RobotPacer, Window

# Source: 自定义机器人使用指南 ("注意事项"),
# https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot
PUSHES_PER_SECOND = 5
PUSHES_PER_MINUTE = 100
WINDOWS: tuple[Window, ...] = ((PUSHES_PER_SECOND, 1.0), (PUSHES_PER_MINUTE, 60.0))
# The platform counts arrivals, the pacer departures: a margin absorbs the difference in travel time.
MARGIN_SECONDS = 0.05


def robot_pacer() -> RobotPacer:
    """A pacer with Feishu's limits, for the broadcast worker (one per process: it holds every bot)."""
    return RobotPacer(WINDOWS, margin=MARGIN_SECONDS)
