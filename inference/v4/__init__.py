"""DeepSeek-V4-style building blocks on top of the kernels: manifold-constrained
hyper-connections (`mhc`) and a small synthetic model that uses them (`synthetic`)."""
