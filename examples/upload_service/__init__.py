"""A FastAPI service that accepts pickled NumPy arrays under the numpy-only policy."""
