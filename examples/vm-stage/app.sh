#!/bin/sh
echo "app $* as $(id -un) in $(pwd), MODE=$MODE"
cat index.txt
ls -ld /srv | cut -c1-10
