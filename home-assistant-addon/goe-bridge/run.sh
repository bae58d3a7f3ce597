#!/usr/bin/with-contenv bashio
# The add-on's options (/data/options.json) and the Supervisor's MQTT service become the
# bridge's config; `goe-bridge addon-config` does the translation (tested in the project).
set -euo pipefail

bashio::services.available mqtt || bashio::exit.nok "No MQTT broker: install the Mosquitto add-on or set up MQTT in Home Assistant."
MQTT_JSON=$(jq -n \
  --arg host "$(bashio::services mqtt host)" \
  --arg port "$(bashio::services mqtt port)" \
  --arg username "$(bashio::services mqtt username)" \
  --arg password "$(bashio::services mqtt password)" \
  --arg ssl "$(bashio::services mqtt ssl)" \
  '{host: $host, port: ($port|tonumber), username: $username, password: $password, ssl: ($ssl == "true")}')

umask 077
echo "$MQTT_JSON" | /opt/goe-bridge/bin/goe-bridge addon-config \
  --options /data/options.json --mqtt - > /tmp/goe-bridge.yaml
exec /opt/goe-bridge/bin/goe-bridge run -c /tmp/goe-bridge.yaml
