"""Simulated devices and sites: signals, faults, an RS-485 line emulator, Modbus and
serial-text device servers, and a runtime control channel. Used by tests, demos and drills."""
