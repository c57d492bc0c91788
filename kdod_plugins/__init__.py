"""kdod's own optional components, each registered through its own `kdod.plugins` entry point.

Each module here imports only what it needs, so a missing optional dependency disables that
component alone. Third-party packages follow the same pattern: an entry point in the group
`kdod.plugins` naming a module that registers components with `kdod.register_loss` /
`register_backbone` / `register_ocr` / `register_teacher` (see pyproject.toml).
"""
