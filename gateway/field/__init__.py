"""Field acquisition: buses, request planning, decoding, polling."""
