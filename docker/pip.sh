#!/bin/sh
# pip of an image build (/opt/venv). When the build is given the secret `ca` (a PEM bundle, e.g.
# --secret id=ca,src=/etc/ssl/certs/ca-certificates.crt where the package index sits behind a
# TLS-inspecting proxy), pip trusts that bundle instead of its own. A secret is mounted for one RUN
# instruction only: it is in no layer of the image.
set -eu
if [ -s /run/secrets/ca ]; then
    export PIP_CERT=/run/secrets/ca
fi
exec /opt/venv/bin/python -m pip "$@"
