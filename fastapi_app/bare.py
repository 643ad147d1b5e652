"""fastapi-bare: FastAPI's hello-world, context for memory claims (not a benchmark target).

Served exactly like fastapi-async (uvicorn, 1 process, uvloop + httptools; see targets.toml), but
imports nothing beyond FastAPI: no SQLAlchemy/asyncpg, no openai SDK, no redis, no seed routers. Its
idle memory is the framework's own cost; fastapi-async's minus it is the app's.
"""

from fastapi import FastAPI

app = FastAPI()


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}  # nothing to be ready for: no DB, no upstream
