"""kdod's own optional components, registered through the `kdod.plugins` entry point.

Each module here imports only what it needs, so a missing optional dependency
disables that component alone. Third-party packages follow the same pattern:
an entry point in the group `kdod.plugins` naming a module that registers
components with `kdod.register_loss` / `register_backbone` / `register_ocr`.
"""

# Each backend imports its engine only when built, so both register even without their engine.
from kdod_plugins import rapidocr_backend, tesseract_backend  # noqa: F401
