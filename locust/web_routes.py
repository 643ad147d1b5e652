"""The web UI's "Comparison" tab: its routes, and the guards of a UI with no login.

The tab is drawn by web_ui.js from `GET /lab/table` (bench/comparison.py: one table with every
column, sortable, and its charts); it also offers the Compare form (`POST /lab/compare`), earlier
sessions and runs under the same results folder (`GET /lab/runs`, opened read-only) beside
`bench diff`'s comparison of two (`GET /lab/diff`), and the downloads. The rows themselves are
measured by web_session.py.

What can change state is guarded: a request from another site's page is refused, Locust's
any-origin CORS is removed, and the start form may set only the options it shows.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import gevent
from flask import Response, jsonify, make_response, request, send_file
from locust.argument_parser import ui_extra_args_dict
from locust.runners import STATE_CLEANUP, STATE_RUNNING, STATE_SPAWNING, STATE_STOPPING, MasterRunner
from request_ledger import RECORDING
from web_session import RECORDS_MSG, Recorder, plan_from_form

from locust import events

try:
    from bench import comparison, diff
    from bench import session as lab
    from bench.results import Run
except ImportError:  # a Locust install without the lab's bench package: no tab (add_comparison_tab)
    lab = None

HERE = Path(__file__).resolve().parent
TAB = "comparison"
HOSTS_CACHE_S = 5.0
# What the start form shows besides the lab's own options (include_in_web_ui): nothing else may be
# set through /swarm (a hidden option such as --ledger names a file Locust writes).
FORM_FIELDS = {"user_count", "spawn_rate", "host", "user_classes", "shape_class", "run_time", "profile"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
STANDALONE_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Concurrency Lab: comparison</title></head>
<body data-lab="standalone" style="margin: 0 auto; max-width: 1600px">
<script src="./lab/web-ui.js"></script></body></html>
"""
log = logging.getLogger(__name__)


# --- the web UI -----------------------------------------------------------------------------------

def error(status: int, code: str, message: str) -> Response:
    return make_response(jsonify({"error": {"code": code, "message": message}}), status)


def cross_origin(req) -> bool:
    """A browser's request made by another site's page: its Origin is not this server, or the
    browser says so (Sec-Fetch-Site). Requests without either (curl, scripts) are the user's own."""
    if req.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    origin = req.headers.get("Origin")
    if not origin:
        return False
    return urlparse(origin).netloc != req.host


def hidden_fields(form, shown: set[str]) -> list[str]:
    """The fields of a /swarm form that the start form does not show."""
    return sorted(set(form) - FORM_FIELDS - shown)


def _inject_script(response: Response) -> Response:
    """The index page loads web_ui.js (the Comparison tab, the Host field's list)."""
    if response.mimetype == "text/html" and not response.direct_passthrough:
        html = response.get_data(as_text=True)
        if "</body>" in html and "lab/web-ui.js" not in html:
            response.set_data(html.replace("</body>", '<script src="./lab/web-ui.js"></script>\n</body>', 1))
    return response


def _keep_polling_while_stopping(response: Response) -> Response:
    """The web UI polls /stats/requests only while a swarm spawns or runs. When the server stops a
    swarm itself (after a drain) a master passes through "stopping" while its workers stop, and a UI
    that saw it would stop polling and show "STOPPING" for good; so that brief state reads as
    "running" here and the UI polls on until "stopped"."""
    body = response.get_json()
    if body.get("state") == "stopping":
        body["state"] = "running"
        response.set_data(jsonify(body).get_data())
    return response


def _without_cors(app) -> None:
    """Locust lets every origin read every answer (flask-cors); the lab's UI serves itself only."""
    funcs = app.after_request_funcs.get(None, [])
    app.after_request_funcs[None] = [f for f in funcs if "cors" not in getattr(f, "__module__", "")]


def _render_reports(run_dir: Path) -> None:
    """report.md and report.html (`bench report`), in another process: the charts take a core for a
    moment, which inside Locust's loop would hold back the users of the row being measured. Only
    when results.json is newer than the reports, so asking again costs nothing."""
    results, html = run_dir / "results.json", run_dir / "report.html"
    if html.exists() and html.stat().st_mtime >= results.stat().st_mtime:
        return
    from gevent import subprocess
    done = subprocess.run([sys.executable, "-m", "bench.report", str(run_dir)], capture_output=True,
                          timeout=300, check=False, cwd=str(HERE.parent))
    if done.returncode != 0:
        raise RuntimeError(done.stderr.decode(errors="replace")[-2000:])


@events.init.add_listener
def add_comparison_tab(environment, web_ui=None, **_kw) -> None:
    if web_ui is None:  # headless or worker: no UI, nothing to record
        return
    if lab is None:
        log.warning("no Comparison tab: the lab's bench package is not importable")
        return
    opts = environment.parsed_options
    workload = (int(opts.db_ms), int(opts.llm_ms))  # the command line's: the session's own workload
    registry = Path(opts.lab_targets) if opts.lab_targets else None
    session = (lab.Session(Path(opts.session_dir), workload, registry) if opts.session_dir
               else lab.Session.new(Path("results"), workload, registry))
    compose = bool(getattr(opts, "memory_cgroup", None))
    recorder = Recorder(environment, session, getattr(environment, "target_memory", None))
    environment.events.test_start.add_listener(recorder.on_test_start)
    environment.events.test_stopping.add_listener(recorder.on_test_stopping)
    environment.events.test_stop.add_listener(recorder.on_test_stop)
    environment.events.quitting.add_listener(recorder.on_quitting)
    if isinstance(environment.runner, MasterRunner):
        environment.runner.register_message(
            RECORDS_MSG, lambda msg, **_: RECORDING.ledger and RECORDING.ledger.write_forwarded(msg.data))
    gevent.spawn(recorder.run)
    web_ui.template_args.setdefault("extended_tabs", []).append({"title": "Comparison", "key": TAB})
    auth = web_ui.auth_required_if_enabled
    hosts_cache: dict[str, object] = {"at": 0.0, "hosts": []}
    shown_options: set[str] = set()
    app = web_ui.app
    _without_cors(app)

    def hosts_up() -> list[dict]:
        if time.monotonic() - hosts_cache["at"] > HOSTS_CACHE_S:
            hosts_cache.update(at=time.monotonic(), hosts=lab.hosts_up(compose, lab.read_registry(registry)))
        return hosts_cache["hosts"]

    def run_dir(run_id: str | None) -> Path | None:
        """The session's own folder, or an earlier run of the same results folder (by its name)."""
        if not run_id or run_id == session.run_dir.name:
            return session.run_dir
        return lab.run_folder(session.run_dir.parent, run_id)

    @app.before_request
    def guard():
        if request.method not in SAFE_METHODS and cross_origin(request):
            return error(403, "cross_origin", "requests from another site's page are refused")
        if request.method == "POST" and request.path.endswith("/swarm"):
            if not shown_options:
                shown_options.update(ui_extra_args_dict())
            hidden = hidden_fields(request.form, shown_options)
            if hidden:
                return error(400, "invalid_parameter",
                             f"the start form does not set {', '.join(hidden)}")
            if recorder.plan is not None and not recorder.plan.finished:
                return error(409, "comparing", "a comparison is running: cancel it in the Comparison tab")
            if environment.runner.state in (STATE_RUNNING, STATE_SPAWNING):
                recorder.users_changing()
        if request.method == "POST" and request.path.endswith("/stop") and recorder.stop_asked():
            return jsonify({"success": True, "message": "the window closed: stopping once its requests "
                                                        "have finished (Stop again to stop now)"})
        return None

    @app.after_request
    def inject(response):
        if request.path.endswith("/stats/requests") and response.is_json:
            return _keep_polling_while_stopping(response)
        return _inject_script(response) if request.path.endswith("/") else response

    @app.route("/lab/web-ui.js")
    def web_ui_js():
        return send_file(HERE / "web_ui.js", mimetype="text/javascript", max_age=0)

    @app.route("/comparison")
    @auth
    def comparison_page():
        """The Comparison tab on a page of its own (a link to share, a screenshot to take)."""
        return Response(STANDALONE_PAGE, mimetype="text/html")

    @app.route("/lab/charts.js")
    def charts_js():
        return send_file(comparison.CHARTS_JS, mimetype="text/javascript", max_age=0)

    @app.route("/lab/hosts")
    @auth
    def hosts():
        return jsonify(hosts_up())

    @app.route("/lab/session")
    @auth
    def session_info():
        return jsonify({"run_id": session.run_dir.name, "dir": str(session.run_dir),
                        "rows": len(session.run.results), "recording": recorder.recording(),
                        "compare": recorder.plan.status() if recorder.plan else None,
                        "problem": recorder.problem,
                        "workload": {"db_ms": workload[0], "llm_ms": workload[1]}})

    @app.route("/lab/runs")
    @auth
    def runs():
        listed = lab.list_runs(session.run_dir.parent, current=session.run_dir.name)
        if not any(r["run_id"] == session.run_dir.name for r in listed):  # no row yet: no folder yet
            listed.insert(0, {"run_id": session.run_dir.name, "kind": "web-ui", "rows": 0,
                              "started_at": session.run.started_at, "command": None})
        return jsonify(listed)

    @app.route("/lab/table")
    @auth
    def table():
        folder = run_dir(request.args.get("run"))
        if folder is None:
            return error(404, "not_found", "no such run in this results folder")
        run = session.run if folder == session.run_dir else Run.load(folder)
        return jsonify({**comparison.comparison_json(run), "current": folder == session.run_dir})

    @app.route("/lab/diff")
    @auth
    def compare_runs():
        a, b = run_dir(request.args.get("a")), run_dir(request.args.get("b"))
        if a is None or b is None:
            return error(404, "not_found", "no such run in this results folder")
        runs = [session.run if d == session.run_dir else Run.load(d) for d in (a, b)]
        return jsonify(diff.diff_json(diff.diff(*runs)))

    @app.route("/lab/compare", methods=["POST"])
    @auth
    def start_compare():
        if recorder.plan is not None and not recorder.plan.finished:
            return error(409, "comparing", "a comparison is running already")
        if environment.runner.state in (STATE_RUNNING, STATE_SPAWNING, STATE_STOPPING, STATE_CLEANUP):
            return error(409, "swarming", "stop the running swarm first")
        try:
            plan = plan_from_form(request.get_json(silent=True), hosts_up(), workload)
        except ValueError as exc:
            return error(400, "invalid_parameter", str(exc))
        recorder.compare(plan)
        return jsonify(plan.status())

    @app.route("/lab/compare", methods=["DELETE"])
    @auth
    def cancel_compare():
        if recorder.plan is None or recorder.plan.finished:
            return error(404, "not_found", "no comparison is running")
        recorder.plan.cancelled = True
        recorder.stop_asked()
        return jsonify(recorder.plan.status())

    @app.route("/lab/comparison", methods=["DELETE"])
    @auth
    def clear():
        session.clear()
        return jsonify({"rows": 0})

    @app.route("/lab/comparison/rows/<path:recorded_at>", methods=["DELETE"])
    @auth
    def delete(recorded_at: str):
        if not session.delete(recorded_at):
            return error(404, "not_found", f"no row recorded at {recorded_at}")
        return jsonify({"rows": len(session.run.results)})

    @app.route("/lab/session/<any('results.json', 'report.md', 'report.html', 'comparison.csv'):name>")
    @auth
    def download(name: str):
        folder = run_dir(request.args.get("run"))
        if folder is None:
            return error(404, "not_found", "no such run in this results folder")
        stem = f"{folder.name}-{name}"
        if name == "comparison.csv":
            run = session.run if folder == session.run_dir else Run.load(folder)
            return Response(comparison.comparison_csv(run), mimetype="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="{stem}"'})
        if name != "results.json":
            if folder == session.run_dir:
                session.save()  # the ceilings as of now
            try:
                _render_reports(folder)
            except Exception as exc:
                return error(500, "report_failed", f"the report could not be rendered: {exc}")
        return send_file(folder.resolve() / name, as_attachment=name != "report.html", max_age=0,
                         download_name=stem)
