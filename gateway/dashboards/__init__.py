"""Grafana dashboards: one definition (definition.py) rendered for InfluxQL and MetricsQL."""
