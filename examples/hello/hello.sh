#!/bin/sh
echo "hello from c2vm: kernel $(uname -r), user $(id -un), in $(pwd)"
