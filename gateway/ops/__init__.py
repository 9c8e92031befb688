"""Operations: health (`/healthz`), Prometheus metrics (`/metrics`) and the technician's status
report (`roomwarden status`), all read from the running gateway at the moment they are asked
for — nothing here runs on the data path."""
