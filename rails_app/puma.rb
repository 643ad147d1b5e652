# Puma settings of rails-puma; bind, workers and threads come from targets.toml's command line.
environment "production"
# How long a worker may finish its in-flight requests after SIGTERM (targets.toml's graceful_s).
worker_shutdown_timeout Integer(ENV.fetch("PUMA_GRACEFUL_S", "5"))
# Longer than the slowest valid request, so the app answers 504 itself (as gunicorn's timeout).
worker_timeout 120
# After a graceful stop, exit 0 rather than re-raise SIGTERM (an exit by signal reads as a crash).
raise_exception_on_sigterm false
# max_fast_inline stays at Puma's default (10): a thread serves up to 10 requests of one keep-alive
# connection in a row before it looks at the others, so under many keep-alive clients some wait far
# longer than the rest. That is Puma as Rails generates it; the report flags the latency it causes.
