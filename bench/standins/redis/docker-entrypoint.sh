#!/bin/sh
# The official redis image's entrypoint, in the parts the lab relies on.
set -e
case "$1" in -*|*.conf) set -- redis-server "$@" ;; esac
if [ "$1" = redis-server ]; then
    # Without a config file the official image turns protected mode off (the network is the guard).
    case "$2" in *.conf) ;; *) shift; set -- redis-server --protected-mode no "$@" ;; esac
    if [ "$(id -u)" = 0 ]; then
        exec setpriv --reuid=redis --regid=redis --init-groups -- "$@"
    fi
fi
exec "$@"
