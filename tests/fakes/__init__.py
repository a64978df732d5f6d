"""Fake platform servers for tests: real aiohttp apps on loopback that check what they receive as the
platforms do (their limits and error codes) and record it, so tests assert on what was really sent."""
