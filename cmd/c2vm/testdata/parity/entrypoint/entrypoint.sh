#!/bin/sh
set -e
echo "entrypoint as $(id -un) with $# args" >&2
exec "$@"
