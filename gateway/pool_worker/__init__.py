"""`gateway worker`: the embedded engine of one pool replica behind the internal streaming API."""
