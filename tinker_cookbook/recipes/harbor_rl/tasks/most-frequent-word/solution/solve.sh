#!/bin/bash
# Reference solution.
set -e
tr ' ' '\n' < /app/text.txt | grep -v '^$' | sort | uniq -c | sort -rn | head -1 | awk '{print $2}' > /app/answer.txt
