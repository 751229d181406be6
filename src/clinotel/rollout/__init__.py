"""Rollback as a feature: change events sent from pipelines (`clinotel changes`), the flag
inventory (`clinotel flags`), and the release gate and kill-switch rehearsal (`clinotel rollout`).
The kill switch itself is an alert rule's action (`clinotel.alerts.actions`)."""
