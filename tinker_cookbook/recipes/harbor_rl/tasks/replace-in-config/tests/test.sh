#!/bin/bash
# Grades the task: writes 1 (pass) or 0 (fail) to /logs/verifier/reward.txt.
mkdir -p /logs/verifier
if ! grep -q localhost /app/config.ini && [ "$(grep -c db.internal /app/config.ini)" = "2" ] && grep -q "cache.internal" /app/config.ini; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
