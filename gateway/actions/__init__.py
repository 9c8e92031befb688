"""Local alarm actions: which outputs should be on, and driving their coils."""
