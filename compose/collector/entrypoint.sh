#!/bin/sh
# Starts as root only to hand the tokens file to the unprivileged user: compose bind-mounts it from
# the host with the host's owner and mode 0600 (the collector refuses a tokens file others can
# read), so the clinotel user could not read it where it is mounted. Then runs clinotel as that user.
set -eu
if [ "$(id -u)" = 0 ]; then
    if [ -f /etc/clinotel/tokens.toml ]; then
        install -m 600 -o clinotel -g clinotel /etc/clinotel/tokens.toml /run/clinotel/tokens.toml
    fi
    exec setpriv --reuid=clinotel --regid=clinotel --init-groups clinotel "$@"
fi
exec clinotel "$@"
