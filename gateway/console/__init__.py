"""The operators' web console (docs/console.md): static files served at /console."""

from gateway.console.routes import console_router

__all__ = ["console_router"]
