#!/bin/sh
# Deploy the web client and the nginx config to HOST.
set -eu

HOST="${1:?usage: deploy.sh HOST}"
HERE="$(cd "$(dirname "$0")/.." && pwd)"

python3 "$HERE/scripts/render_config.py" > /tmp/items.conf
scp /tmp/items.conf "$HOST:/etc/nginx/sites-enabled/items.conf"
rsync -a --delete ../web/ "$HOST:/srv/items/web/"
ssh "$HOST" "nginx -t && systemctl reload nginx"
