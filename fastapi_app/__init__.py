"""FastAPI targets of Concurrency Lab: fastapi-async, fastapi-threadpool, fastapi-blocking(-w4)."""
