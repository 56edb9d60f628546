"""Dispatch: one Backend interface (embedded engine, pool worker, upstream engine), the
replica registry of the pools, and the choice of replica for each request (docs/pools.md)."""

from inference.dispatch.backend import Backend, Health
from inference.dispatch.dispatcher import Dispatcher
from inference.dispatch.embedded_backend import EmbeddedBackend
from inference.dispatch.types import BACKENDS, DispatchRequest, Placement, PoolConfig, ReplicaSpec
from inference.dispatch.upstream import UpstreamBackend
from inference.dispatch.worker_client import WorkerBackend

__all__ = [
    "BACKENDS",
    "Backend",
    "DispatchRequest",
    "Dispatcher",
    "EmbeddedBackend",
    "Health",
    "Placement",
    "PoolConfig",
    "ReplicaSpec",
    "UpstreamBackend",
    "WorkerBackend",
]
