"""FHIR R4 read/search facade of a hospital's records: `/fhir/<slug>/`.

The package shares its top-level name with the `fhir.resources` distribution (installed
for the tests, which validate every emitted resource with it). `extend_path` lets
`import fhir.resources` find that distribution's subpackage beside this app's modules;
this app has no module named `resources`."""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
