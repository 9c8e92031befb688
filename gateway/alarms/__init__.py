"""Alarms: the ISA-18.2 lifecycle of every (rule, subject), its journal and its events.

`types` is the contract with the rules; `lifecycle` the pure state machine (and what each state
demands of annunciation and actions); `manager` runs it; `journal` keeps it in SQLite."""
