"""RoomWarden: an edge safety gateway for equipment rooms, data centers and battery rooms."""

__version__ = "0.1.0"
