#!/bin/bash
# 1 when /srv/report/count.txt holds 4 (the file must be in the task's workdir).
if [ "$(tr -d '[:space:]' < /srv/report/count.txt 2>/dev/null)" = "4" ]; then
  echo 1 > /logs/verifier/reward.txt
else
  echo 0 > /logs/verifier/reward.txt
fi
