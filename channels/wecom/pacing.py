"""WeCom's limit for each group robot, for the shared per-robot pacer (channels/pacing.py).

消息推送配置说明 ("消息发送频率限制"): "每个机器人发送的消息不能超过20条/分钟" (each robot, at most 20
messages a minute). The limit is per robot key: one group never holds the others back.
"""

from __future__ import annotations

from channels.pacing import RobotPacer, Window

# Source: 消息推送配置说明 (formerly 群机器人配置说明), https://developer.work.weixin.qq.com/document/path/99110
# (formerly .../path/91770), "消息发送频率限制": "每个机器人发送的消息不能超过20条/分钟。"
PUSHES_PER_MINUTE = 20
WINDOW_SECONDS = 60.0
WINDOWS: tuple[Window, ...] = ((PUSHES_PER_MINUTE, WINDOW_SECONDS),)
# The platform counts arrivals, the pacer departures: a margin absorbs the difference in travel time.
MARGIN_SECONDS = 0.25


def robot_pacer() -> RobotPacer:
    """A pacer with WeCom's limit, for the broadcast worker (one per process: it holds every robot)."""
    return RobotPacer(WINDOWS, margin=MARGIN_SECONDS)
