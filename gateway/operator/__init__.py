"""Operator commands: the one service behind the panel and the uplink, and the uplink's
command inbox (signed commands verified to a refusal code or a command to carry out)."""
