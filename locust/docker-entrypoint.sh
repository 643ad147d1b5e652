#!/bin/sh
# Starts Locust as the unprivileged `lab` user (uid 10001). When the Docker socket is mounted (the
# web UI's "Target memory" tab reads the Engine API), the container starts as root just long
# enough to learn the socket's group, then drops to uid 10001 with that group added: no DOCKER_GID
# to set, whether the host's socket is root:docker or root-only (group root).
set -e
if [ "$(id -u)" = 0 ]; then
    groups=10001
    socket=${DOCKER_HOST#unix://}
    socket=${socket:-/var/run/docker.sock}
    if [ -S "$socket" ]; then
        groups="$groups,$(stat -c %g "$socket")"
    fi
    # The web UI records its swarms in results/web-ui-<time>/ (bind-mounted from the host, whose
    # folder uid 10001 may not write): the session folder is made here, writable by both sides,
    # and removed again by Locust if no swarm was recorded in it.
    case " $* " in *" --worker "*) ;; *)
        if [ -d results ] && [ -z "${LOCUST_SESSION_DIR:-}" ]; then
            LOCUST_SESSION_DIR="results/web-ui-$(date -u +%Y%m%d-%H%M%S)"
            install -d -m 0777 "$LOCUST_SESSION_DIR"
            export LOCUST_SESSION_DIR
        fi ;;
    esac
    exec setpriv --reuid=10001 --regid=10001 --groups="$groups" --inh-caps=-all -- "$@"
fi
exec "$@"
