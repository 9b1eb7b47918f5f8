#!/bin/bash
# Two graded aspects in reward.json (no "reward" key: training uses their mean):
# correct: the total equals $EXPECTED_TOTAL; formatted: the file is one line of digits.
correct=0; formatted=0
if [ -f /app/total.txt ]; then
  [ "$(tr -d '[:space:]' < /app/total.txt)" = "$EXPECTED_TOTAL" ] && correct=1
  grep -qxE '[0-9]+' /app/total.txt && [ "$(wc -l < /app/total.txt)" = "1" ] && formatted=1
fi
printf '{"correct": %d, "formatted": %d}\n' "$correct" "$formatted" > /logs/verifier/reward.json
