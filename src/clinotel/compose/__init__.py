"""The files the `compose/` stack mounts that are generated rather than written by hand: Grafana's
provisioning (datasource, dashboards, alert rules), Alertmanager's configuration, the collector's
tokens and rules, the contrib collector's configuration, and the secrets in `generated/.env`."""

from clinotel.compose.generate import GENERATED, Generated, generate

__all__ = ["GENERATED", "Generated", "generate"]
