#!/bin/sh
# Starts Locust unprivileged. The master records its web UI's swarms in the bind-mounted results/
# (locust/web_session.py): it runs as the host user who owns that folder, so the host reads and
# removes what it writes, or as uid 10001 where the folder is root's (never as root). It starts as
# root only to make the session folder as that user, then drops to it with no capability left.
set -e
if [ "$(id -u)" = 0 ]; then
    uid=10001 gid=10001
    if [ -d results ] && [ "$(stat -c %u results)" != 0 ]; then
        uid=$(stat -c %u results) gid=$(stat -c %g results)
    fi
    # Switching to a non-root uid clears the permitted and effective capabilities; compose's
    # no-new-privileges keeps any from coming back through an exec.
    drop="setpriv --reuid=$uid --regid=$gid --clear-groups --inh-caps=-all --"
    case " $* " in *" --worker "*) ;; *)
        if [ -d results ] && [ -z "${LOCUST_SESSION_DIR:-}" ]; then
            LOCUST_SESSION_DIR="results/web-ui-$(date -u +%Y%m%d-%H%M%S)"
            if [ "$uid" = 10001 ]; then  # results/ is root's: made here, handed to uid 10001 (CHOWN)
                mkdir -m 0755 "$LOCUST_SESSION_DIR"
                chown "$uid:$gid" "$LOCUST_SESSION_DIR"
            else
                $drop mkdir -m 0755 "$LOCUST_SESSION_DIR"
            fi
            export LOCUST_SESSION_DIR
        fi ;;
    esac
    exec $drop "$@"
fi
exec "$@"
