"""The collector distribution's folder, a package only so its tests import one another as `collector.tests`."""
