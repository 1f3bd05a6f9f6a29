"""The Discord adapter: `/mldebt` app commands and buttons in, embeds and views out (discord.py).

`build_bot` (client.py) is the one factory; runner.py starts it next to the other adapters and
commands_cli.py holds `mldebt discord sync` and `mldebt discord invite-url`.
"""
