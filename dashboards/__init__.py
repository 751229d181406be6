"""The dashboards distribution's folder, a package only so its tests import one another as `dashboards.tests`."""
