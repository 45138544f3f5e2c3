#!/bin/sh
# Alertmanager's entrypoint in docker compose: picks the receiver file of alerts.format
# (slack.yml, discord.yml, telegram.yml beside this script) and starts Alertmanager with it.
# The webhook URL is never in a config file nor in the environment: compose mounts the secret
# HEDGEFLOW__ALERTS__WEBHOOK_URL (.env) as a file that slack/discord read as api_url_file /
# webhook_url_file. Telegram's receiver wants the bot token and the chat id apart: both are
# written to files under $ALERT_RUN_DIR (a tmpfs), the token cut out of the webhook URL
# https://api.telegram.org/bot<token>/sendMessage.
# The paths can be changed for a test: ALERT_WEBHOOK_URL_FILE, ALERT_CONFIG_DIR, ALERT_RUN_DIR,
# ALERTMANAGER_BIN.
set -eu
fmt="${HEDGEFLOW__ALERTS__FORMAT:-slack}"
url_file="${ALERT_WEBHOOK_URL_FILE:-/run/secrets/alert_webhook_url}"
config_dir="${ALERT_CONFIG_DIR:-/etc/alertmanager}"
run_dir="${ALERT_RUN_DIR:-/tmp}"
case "$fmt" in
  slack|discord|telegram) ;;
  *) echo "alerts.format (HEDGEFLOW__ALERTS__FORMAT in .env) is '$fmt': use slack, discord or telegram" >&2
     exit 2 ;;
esac
if [ ! -s "$url_file" ]; then
  echo "HEDGEFLOW__ALERTS__WEBHOOK_URL is empty in .env: Prometheus' alerts reach Alertmanager but no one else" >&2
fi
if [ "$fmt" = telegram ]; then
  token="$(sed -n 's#^.*/bot\([^/]*\)/.*$#\1#p' "$url_file" 2>/dev/null || true)"
  if [ -s "$url_file" ] && [ -z "$token" ]; then
    echo "HEDGEFLOW__ALERTS__WEBHOOK_URL is not a Telegram bot URL (https://api.telegram.org/bot<token>/sendMessage)" >&2
    exit 2
  fi
  chat="${HEDGEFLOW__ALERTS__TELEGRAM_CHAT_ID:-}"
  if [ -s "$url_file" ] && [ -z "$chat" ]; then
    echo "alerts.format telegram needs HEDGEFLOW__ALERTS__TELEGRAM_CHAT_ID in .env" >&2
    exit 2
  fi
  umask 077
  printf '%s' "$token" > "$run_dir/telegram_bot_token"
  printf '%s' "$chat" > "$run_dir/telegram_chat_id"
fi
exec "${ALERTMANAGER_BIN:-/bin/alertmanager}" \
  --config.file="$config_dir/$fmt.yml" --storage.path=/alertmanager "$@"
