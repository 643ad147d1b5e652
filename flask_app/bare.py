"""flask-bare: Flask's hello-world, context for memory claims (not a benchmark target).

Served exactly like flask-sync (gunicorn sync, same gunicorn.conf.py, same worker count; see
targets.toml), but imports nothing beyond Flask: no DB driver, no SQLAlchemy, no openai SDK, no
pydantic-settings. Its idle memory is the framework's own cost; flask-sync's minus it is the app's.
"""

from flask import Flask

app = Flask(__name__)


@app.get("/healthz")
def healthz():
    return {"status": "ok"}


@app.get("/readyz")
def readyz():
    return {"status": "ready"}  # nothing to be ready for: no DB, no upstream
