"""Configuration: ``schema`` (pure enums and frozen sections, the core may import it),
``bounds`` (every key's range), ``load`` (TOML file + ENGINE_* environment). See
docs/configuration.md.
"""
