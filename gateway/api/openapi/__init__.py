"""The OpenAPI document of the public and admin API (document.py builds it)."""
