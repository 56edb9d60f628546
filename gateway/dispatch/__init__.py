"""The gateway's side of dispatch: the pool registry's replicas, the pools file, the backend
factory from settings, and the admin API and CLI over them (docs/pools.md)."""
