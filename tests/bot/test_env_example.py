"""Every setting the code reads is documented in .env.example (PORT was read but missing once)."""

from __future__ import annotations

import re
from pathlib import Path

import bot.config

ROOT = Path(__file__).resolve().parents[2]
NOT_OURS = {"HOME", "XDG_CACHE_HOME"}  # the platform's own variables, read for defaults


def test_every_setting_read_is_in_env_example():
    source = Path(bot.config.__file__).read_text()
    read = set(re.findall(r'get\("([A-Z_]+)"\)', source)) | set(bot.config._TOKEN_SHAPES)
    documented = set(re.findall(r"^([A-Z_]+)=", (ROOT / ".env.example").read_text(), re.MULTILINE))
    assert {"PORT", "MLDEBT_CACHE_DIR", "MLDEBT_HTTP_PORT"} <= read
    assert read - NOT_OURS <= documented, read - NOT_OURS - documented
