"""Operator commands: the one service behind the panel and the uplink, the uplink's command
inbox (signed commands verified to a refusal code or a command to carry out) and its queue
(one command at a time, in the order of arrival, the replay memory's writes off the loop)."""
